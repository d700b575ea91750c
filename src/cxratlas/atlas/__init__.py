"""The atlas: the wide Parquet table, thumbnails, the viewer state and the viewer."""

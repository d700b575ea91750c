"""Error slices: where a classifier fails, found in every model's space.

A classifier (the user's predictions, or without a `classifiers` section each model's linear
probe) is read and checked before any job (`classifiers`), then normalised to one long table
per classifier (`results/classifiers/<name>.parquet`). Per classifier, finding and model, an
error-aware mixture over the model's PCA-reduced embedding, the label and the score
(`mixture`, Domino's recipe) proposes slices on one half of the patients, and they are tested
on the other half (`search`, `score`): a slice is never tested on the images that found it. The
map's own clusters are scored too. `describe` says what a slice's images share; `across` joins
the models (a slice that recurs in several models' spaces, which model's map isolates the
errors); `plots` draws the strips and the isolation chart; `leads` turns slices into leads.
"""

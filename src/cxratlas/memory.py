"""Resident memory of this process, read from /proc (Linux): now and the high-water mark."""

from __future__ import annotations


def _status(field: str) -> float:
    """A `VmRSS`/`VmHWM` value of /proc/self/status in MiB (NaN where /proc is absent)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def rss_mib() -> float:
    return _status("VmRSS")


def peak_rss_mib() -> float:
    return _status("VmHWM")


def reset_peak() -> None:
    """Start a new high-water mark (Linux >= 4.0: write 5 to clear_refs); ignored elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass

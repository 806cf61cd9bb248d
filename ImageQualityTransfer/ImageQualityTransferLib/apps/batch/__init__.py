"""Cohort processing: every subject of a BIDS dataset (or of a list of subject folders or DTI files) upsampled on
a Dask cluster into a BIDS-derivatives dataset, resumable, with a cohort QC table.

`process` runs one subject and is the same function whatever runs it (in this process, a `LocalCluster` or a
remote scheduler), so a laptop run takes the cluster's code path. A subject whose outputs all carry a sidecar
that matches the request (input hash, method, model hash, factor, Monte Carlo samples) and the size and SHA256 of
its file as written is skipped; a subject's files, images and sidecars, land all or none (fileio.staging.all_or_none),
so a killed run, or a file damaged since, leaves nothing that a restart would trust without redoing it.
"""

from __future__ import annotations

from ...core.errors import IQTError
from .cohort import run_cohort, settle_after_stop
from .dask_client import start_client
from .items import Item, find_items, select_participants
from .qc import flag_outliers, write_qc
from .records import BIDS_VERSION, Settings, check_apart_from_inputs, check_inputs_kept, check_source, model_record, noisy_model_record
from .results import redone_line, say_results, summary
from .scheduler import scheduler_from_file
from .subject import compute, process

__all__ = ["BIDS_VERSION", "IQTError", "Item", "Settings", "check_apart_from_inputs", "check_inputs_kept", "check_source", "compute", "find_items", "flag_outliers", "model_record",
           "noisy_model_record", "process", "redone_line", "run_cohort", "say_results", "scheduler_from_file", "select_participants", "settle_after_stop", "start_client",
           "summary", "write_qc"]

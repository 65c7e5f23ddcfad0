"""Faults injected into the ranks of a launch (imported by the rank processes, not collected)."""

import os
import signal

from netcfg.actions import distributed as dd


def killed_mid_write(job, scratch):
    """The launcher's entry, with rank 1 killed (SIGKILL) after writing half of its first chunk."""
    from netcfg.io import dcp_storage

    def dying(self, fd, item, planner, start):
        if int(os.environ["RANK"]) == 1:
            raw = dcp_storage._bytes_of(planner.resolve_data(item))
            dcp_storage._pwrite_all(fd, raw[: max(1, raw.numel() // 2)], start)
            os.kill(os.getpid(), signal.SIGKILL)
        return original(self, fd, item, planner, start)

    original = dcp_storage.SafetensorsWriter._write_item
    dcp_storage.SafetensorsWriter._write_item = dying
    return dd._entry(job, scratch)

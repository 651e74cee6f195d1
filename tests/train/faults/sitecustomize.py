"""Faults injected into the training processes of a test, imported at their start-up (PYTHONPATH).

AUDIOSSL_FAULT="<kind> <rank> <update>": in a torchrun job's first attempt (TORCHELASTIC_RESTART_COUNT 0),
rank <rank>, about to make update <update>, is killed (kind ``kill``: SIGKILL, as the OOM killer does) or
hangs (kind ``stall``: sleeps for an hour). Every process of such a job that is still running after
two minutes prints its threads' stacks and exits, so that a hang fails the test with a diagnosis.
"""
import faulthandler
import os
import signal
import sys
import time

FAULT = os.environ.get("AUDIOSSL_FAULT", "").split()
if FAULT:
    faulthandler.dump_traceback_later(120, exit=True, file=sys.stderr)
if FAULT and os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0" and os.environ.get("RANK") == FAULT[1]:
    from audiossl.train.trainer import Trainer

    update = Trainer._update
    kind, at = FAULT[0], int(FAULT[2])

    def faulty_update(self, micro_batches):
        if self.state["update"] + 1 == at:
            if kind == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(3600)
        return update(self, micro_batches)

    Trainer._update = faulty_update

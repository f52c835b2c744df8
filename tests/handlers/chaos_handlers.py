"""Handlers for the chaos tests of restarts: a slow check, a slow or failing boot."""

import os
import time
from pathlib import Path

if os.environ.get("NETSERVER_CHECK") == "1" and os.environ.get("SLOW_CHECK_SECONDS"):
    time.sleep(float(os.environ["SLOW_CHECK_SECONDS"]))  # the HUP's validation takes this long


class Pid:
    """Answer every connection with the serving process's pid."""

    def process_request(self, client):
        client.wfile.write(b"%d\n" % os.getpid())


class SlowBoot(Pid):
    """child_init_hook reads $BOOT_FLAG: a number of seconds to sleep, or 'fail' to raise."""

    def child_init_hook(self):
        flag = Path(os.environ["BOOT_FLAG"])
        word = flag.read_text().strip() if flag.exists() else ""
        if word == "fail":
            raise RuntimeError("this generation cannot boot")
        if word:
            time.sleep(float(word))

"""PreForkSimple subclasses the tests run; they leave marks in $MARK_DIR."""

import os
import signal
import threading
import time
from pathlib import Path

from netserver import PreForkSimple


def mark(name: str, text: str = "") -> None:
    folder = Path(os.environ["MARK_DIR"])
    with open(folder / name, "a") as handle:
        handle.write(f"{os.getpid()} {text}\n")


class Hooks(PreForkSimple):
    """Records child_init/child_finish; sleeps on request 'sleep N'; reports pid."""

    def child_init_hook(self):
        mark("init", "dequeue" if self.is_dequeue else "server")
        signal.signal(signal.SIGUSR1, lambda *_: mark("usr1"))

    def child_finish_hook(self):
        mark("finish")

    def process_request(self, client):
        line = client.rfile.readline().strip()
        if line.startswith(b"sleep"):
            time.sleep(float(line.split()[1]))
        client.wfile.write(b"%d\n" % os.getpid())


class Dequeue(Hooks):
    def dequeue(self):
        mark("dequeue", "dequeue" if self.is_dequeue else "not-dequeue")


class SeedDequeue(Hooks):
    def run_dequeue(self):
        mark("dequeue", "run_dequeue")


class Threaded(Hooks):
    def pre_loop_hook(self):
        threading.Thread(target=time.sleep, args=(3600,), name="user-poller", daemon=True).start()


class DoneAfterBye(Hooks):
    """done() ends the child's loop after a client says 'bye'."""

    said_bye = False

    def process_request(self, client):
        self.said_bye = client.rfile.readline().strip() == b"bye"
        client.wfile.write(b"%d\n" % os.getpid())

    def done(self):
        return self.said_bye


class BoardDump(Hooks):
    """The parent writes its scoreboard (its own children only) to $MARK_DIR/board on SIGUSR2."""

    def handle_sigusr2(self, signum):
        rows = []
        for child in self.children:
            slot = self.scoreboard.read(child.slot)
            rows.append(f"{child.pid} {child.kind} {slot.state_name} {slot.requests} {slot.client or '-'}")
        path = Path(os.environ["MARK_DIR"]) / "board"
        path.write_text("\n".join(rows) + "\n")


class ExecFails(PreForkSimple):
    """Makes the HUP's exec fail: restart_close_hook (run after the check passed) removes the
    execute bit from the interpreter the test started us with (a private copy)."""

    def restart_close_hook(self):
        os.chmod(os.environ["NETSERVER_TEST_PYTHON"], 0o644)

    def process_request(self, client):
        client.wfile.write(b"%d\n" % os.getpid())


class ClosesReadyPipe(Hooks):
    """On 'exit-slowly', closes its end of the ready pipe (as a dying process's files are
    closed before it is reaped), answers, and lingers in the request for 3 s."""

    def process_request(self, client):
        line = client.rfile.readline().strip()
        client.wfile.write(b"%d\n" % os.getpid())
        if line == b"exit-slowly":
            os.close(self._ready_write)
            self._ready_write = -1
            time.sleep(3)



_real_close = os.close


def _close_noting_failures(fd: int) -> None:
    try:
        _real_close(fd)
    except OSError as error:
        mark("close-failed", f"{fd} {error.errno}")
        raise


class NotesFailedCloses(Hooks):
    """Hooks, in a process whose os.close notes every close that fails (a descriptor closed twice)."""

    def post_configure_hook(self):
        os.close = _close_noting_failures  # in the parent, before it forks: its children inherit it


class FailsOnceRestarted(PreForkSimple):
    """Starts, passes the HUP check, and fails in the re-exec'ed image (a start-up the check cannot try)."""

    def post_bind_hook(self):
        if self.restarting:
            from netserver import StartupError

            raise StartupError("the licence server is unreachable")


class PerlHooks(Hooks):
    """Marks, in one file and in order, the Net::Server hooks a Perl server is ported with."""

    def run_n_children_hook(self, count):
        mark("hooks", f"run_n_children_hook {count}")

    def pre_fork_hook(self):
        mark("hooks", "pre_fork_hook")

    def delete_child_hook(self, pid):
        mark("hooks", f"delete_child_hook {pid}")

    def idle_loop_hook(self):
        if not getattr(self, "idled", False):
            self.idled = True
            mark("hooks", "idle_loop_hook")

    def restart_open_hook(self):
        mark("hooks", "restart_open_hook")

    def pre_server_close_hook(self):
        mark("hooks", "pre_server_close_hook")

    def child_finish_hook(self):
        mark("hooks", "child_finish_hook")

    def post_child_cleanup_hook(self):
        mark("hooks", "post_child_cleanup_hook")

    def write_to_log_hook(self, level, message):  # Net::Server's; never called here: warned about
        raise AssertionError("write_to_log_hook was called")

"""PreForkSimple: a fixed pool of children, each serving up to max_requests.

The mechanics of forking, reaping, boot backoff, the HUP hand-over and the
stop live in the supervisor; this module is the policy: the pool is
``max_servers`` children at start and after every HUP, TTIN and TTOU move it
by one at run time, and a dequeue child is forked every ``check_for_dequeue``
seconds when ``dequeue()`` is overridden.
"""

from __future__ import annotations

from ..errors import ConfigError
from ..options import PREFORK_SIMPLE_OPTIONS
from ..supervisor import Supervisor
from .prefork_child import PreForkChild


class PreForkSimple(PreForkChild, Supervisor):
    """A parent and a fixed pool of pre-forked children.

    Parent signals: TERM, QUIT stop gracefully (listeners closed, children
    finish their connection and close idle ones, KILL after
    graceful_timeout); INT stops fast (children abandon their work); HUP
    validates and re-execs, keeping the sockets; TTIN/TTOU add or retire one
    child; CHLD reaps; the sig_passthrough signals are forwarded.  Child
    signals: HUP finishes the current connection and exits (at once when
    idle); TERM, INT, QUIT run child_finish_hook and exit at once.

    Hooks in addition to Server's: ``child_init_hook()`` and
    ``child_finish_hook()`` (each child), ``dequeue()`` / ``run_dequeue()``
    (dequeue children; ``self.is_dequeue`` tells a hook where it runs).
    """

    personality = "PreForkSimple"
    declared_options = PREFORK_SIMPLE_OPTIONS

    # ------------------------------------------------------------ configuration
    def post_configure(self) -> None:
        super().post_configure()
        options = self.options
        if options.check_for_dequeue is not None and not self._has_dequeue():
            raise ConfigError("check_for_dequeue", options.check_for_dequeue,
                              self.option_origins["check_for_dequeue"],
                              "is set but neither dequeue() nor run_dequeue() is overridden")

    def _has_dequeue(self) -> bool:
        cls = type(self)
        return cls.dequeue is not PreForkSimple.dequeue or cls.run_dequeue is not PreForkSimple.run_dequeue

    def serialize_kind(self) -> str:
        kind = self.options.serialize
        if kind == "auto":
            return "flock" if len(self.listeners) > 1 else "none"
        return kind

    # ------------------------------------------------------------ pool policy
    def initial_pool_size(self) -> int:
        return self.options.max_servers

    def start_timers(self) -> None:
        if self.options.check_for_dequeue is not None:
            self.events.call_every(self.options.check_for_dequeue, self._spawn_dequeue)

    def _spawn_dequeue(self) -> None:
        if not self.stopping and self.children.count("dequeue") < (self.options.max_dequeue or 1):
            self.spawn("dequeue")

    def handle_sigttin(self, signum: int) -> None:
        if self.stopping:
            return
        self.pool_size += 1
        self.log(2, "Received SIGTTIN: pool size %d (max_servers %d; a HUP restores it)", self.pool_size,
                 self.options.max_servers)

    def handle_sigttou(self, signum: int) -> None:
        if self.stopping:
            return
        if self.pool_size <= 1:
            self.log(2, "Received SIGTTOU: pool size stays at 1")
            return
        self.pool_size -= 1
        retired = self.retire_one()
        self.log(2, "Received SIGTTOU: pool size %d (max_servers %d; a HUP restores it)%s", self.pool_size,
                 self.options.max_servers, "" if retired else "; a busy child leaves when it is recycled")

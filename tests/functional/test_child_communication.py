"""PreFork's child_communication: a socketpair per child, parent_sock and child_is_talking_hook (issue 11)."""

from __future__ import annotations

import threading
import time

from support import procs
from support.clients import connect, read_line, talk

TALKER = ("--handler", "talk_handlers:Talker", "--min_servers", "2", "--max_servers", "6",
          "--min_spare_servers", "1", "--max_spare_servers", "3", "--child_communication")


def lines(path):
    return path.read_text().splitlines() if path.exists() else []


def ask(server, command: bytes) -> int:
    """Send one command, return the pid of the child that answered."""
    return int(talk(server.addr, command + b"\n").split()[0])


def socket_fds(pid: int) -> int:
    return sum(1 for target in procs.fd_targets(pid) if target.startswith("socket:"))


def test_a_line_written_to_parent_sock_reaches_the_hook_in_the_parent(serve, marks):
    server = serve(*TALKER, env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    child = ask(server, b"say hello parent")
    procs.wait_until(lambda: lines(marks / "talk"), 5, message="the hook's mark")
    # The hook ran in the parent, which knows the writer by the pid it forked.
    assert lines(marks / "talk") == [f"{child} {child} hello parent"]
    assert child in server.children()


def test_without_the_option_there_is_no_parent_sock(serve, marks):
    server = serve("--handler", "talk_handlers:Talker", "--max_servers", "2", env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    assert talk(server.addr, b"none\n") == b"True\n"


def test_the_option_is_preforks_as_in_net_server(serve):
    result = serve.run("--server_type", "PreForkSimple", "--child_communication", "--port", "127.0.0.1:0")
    assert result.returncode == 2
    assert "child_communication" in result.stderr.decode()


def test_a_partial_line_is_delivered_when_the_child_exits(serve, marks):
    server = serve(*TALKER, "--max_requests", "1", env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    child = ask(server, b"partial last words")
    procs.wait_until(lambda: lines(marks / "closed"), 5, message="the closed link's rest")
    assert f"{child} {child} last words" in lines(marks / "closed")


def test_a_flooding_child_does_not_stall_the_parent_or_the_pool(serve, marks):
    server = serve(*TALKER, env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    flooder = connect(server.addr, timeout=30)
    flooder.sendall(b"flood 3\n")  # garbage without a newline, as fast as the child can write, for 3 s
    try:
        time.sleep(0.3)
        # While it floods, the parent keeps its loop: it forks spares beside the busy child, and
        # the other children keep answering and talking, each request well within its timeout.
        started = time.monotonic()
        for index in range(30):
            assert talk(server.addr, b"say ping %d\n" % index, timeout=5).endswith(b" ok\n")
        held = [connect(server.addr, timeout=10) for _ in range(3)]
        for sock in held:
            sock.sendall(b"say held\n")
        for sock in held:
            assert read_line(sock).endswith(b" ok\n")  # four busy children: the pool grew past 2
        for sock in held:
            sock.close()
        assert time.monotonic() - started < 2.5, "served while the flood ran"
        procs.wait_until(lambda: sum("ping" in line for line in lines(marks / "talk")) == 30, 10,
                         message="every ping recorded while the flood runs")
        answer = read_line(flooder).split()
        assert answer[1] == b"ok" and int(answer[2]) > 16, answer  # the parent kept reading the flood too
    finally:
        flooder.close()
    # Garbage with no newline is never a line: the parent dropped it, and said so once, not per read.
    assert server.log().count("did not read; dropping") == 1


def test_garbage_beyond_the_buffer_is_dropped_and_logged(serve, marks, tmp_path):
    server = serve("--handler", "talk_handlers:Talker", "--max_servers", "2", "--child_communication",
                   "--log_level", "2", env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    assert b" ok " in talk(server.addr, b"flood 0.2\n", timeout=20)
    procs.wait_until(lambda: "did not read; dropping" in server.log(), 5, message="the drop logged")
    assert talk(server.addr, b"say after\n").endswith(b" ok\n")
    procs.wait_until(lambda: any(line.endswith(" after") for line in lines(marks / "talk")), 5,
                     message="a line after the garbage")


def test_a_hook_that_raises_is_logged_and_the_parent_goes_on(serve, marks):
    server = serve(*TALKER, env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    ask(server, b"say please raise")
    procs.wait_until(lambda: "child_is_talking_hook failed" in server.log(), 5, message="the hook's failure logged")
    child = ask(server, b"say still here")
    procs.wait_until(lambda: f"{child} {child} still here" in lines(marks / "talk"), 5, message="the next line")


def test_a_child_closing_its_end_is_closed_in_the_parent_and_keeps_serving(serve, marks):
    server = serve(*TALKER, "--max_servers", "2", "--max_spare_servers", "1", env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    before = socket_fds(server.pid)
    child = ask(server, b"close")
    procs.wait_until(lambda: socket_fds(server.pid) == before - 1, 5, message="the parent's end closed")
    assert procs.alive(child)
    for _ in range(4):  # whichever child takes them, the one without a parent_sock included
        assert talk(server.addr, b"hello\n").endswith(b" ok\n")


def test_the_parent_end_is_closed_when_a_child_is_reaped(serve, marks):
    server = serve(*TALKER, "--max_requests", "1", env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    before = socket_fds(server.pid)
    seen = set()
    for index in range(20):
        seen.add(ask(server, b"say recycle %d" % index))  # each child serves one and is replaced
    assert len(seen) == 20
    server.wait_children(2, exclude=seen)
    procs.wait_until(lambda: socket_fds(server.pid) == before, 5, message="no socket left per reaped child")
    procs.wait_until(lambda: len(lines(marks / "talk")) == 20, 5, message="every child's line delivered")


def test_children_hold_only_their_own_end(serve, marks):
    server = serve(*TALKER, "--min_servers", "4", env={"MARK_DIR": str(marks)})
    kids = server.wait_children(4)
    for pid in kids:
        # the listener, and one end of its own socketpair: no other child's, no parent end
        assert socket_fds(pid) == 2, procs.fd_targets(pid)


def test_many_talkers_at_once_are_all_heard(serve, marks):
    server = serve(*TALKER, env={"MARK_DIR": str(marks)})
    server.wait_children(2)
    errors = []

    def client(index):
        try:
            for turn in range(10):
                talk(server.addr, b"say c%d-%d\n" % (index, turn), timeout=10)
        except OSError as error:
            errors.append(error)

    threads = [threading.Thread(target=client, args=(index,)) for index in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    procs.wait_until(lambda: len(lines(marks / "talk")) == 50, 10, message="50 lines")

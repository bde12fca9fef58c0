"""A bot inherited across fork() is abandoned in the child, never closed on the parent's socket."""

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, os
    from watchers_bot import Bot, BotClosed
    from watchers_bot.emulator import Emulator

    with Emulator(tokens=["tok-fork-test"], api_keys=["key-fork-test"]) as emu:
        bot = Bot("tok-fork-test", "key-fork-test", "b", url=emu.url)
        bot.listen("r")
        pid = os.fork()
        if pid == 0:  # the child: the inherited bot must refuse, and exit must not touch it
            try:
                bot.send("r", "from the child")
            except BotClosed as exc:
                assert "fork" in str(exc), exc
            else:
                os._exit(3)
            assert bot.state == "closed" and not bot.connected
            # A worker's exit runs the exit hooks; os._exit then skips unwinding
            # the emulator's with-block, which belongs to the parent.
            atexit._run_exitfuncs()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        emu.post("r", "after the child exited")
        assert bot.receive(timeout=5).text == "after the child exited"
        assert bot.stats.reconnects == 0, bot.stats
        assert emu.connections == 1, emu.connections
        assert emu.sent == []
        bot.close()
    print("OK")
    """
)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX fork only")
def test_bot_inherited_across_fork_is_abandoned_in_the_child():
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                            timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"

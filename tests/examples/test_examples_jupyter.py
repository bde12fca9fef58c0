"""examples/notebook.ipynb, executed cell by cell in a real IPython kernel (nbclient).

The kernel is a child process configured like a user's: the WATCHERS_* variables
(from the plugin's watchers_env fixture) point at the plugin's emulator, and the
test plays the human in the room.  Beyond running the notebook, it checks the
traps of notebooks: a cell re-run while its bot is open (DuplicateBotWarning),
an interrupted ``for msg in bot.messages():`` (no zombie connection, the kernel
stays usable), and a bot left open when the kernel shuts down (closed cleanly).
"""

import asyncio
import copy
import json
import sys
import threading
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebook.ipynb"
ROOM = "nb-room"
WAIT = 30.0
KERNEL = "watchers-test-python"

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def kernel_env(watchers_env, tmp_path, monkeypatch):
    """The kernel's environment: the emulator's WATCHERS_* variables, this Python as the
    kernel (not whatever "python3" kernelspec the machine has), and no user profile."""
    spec = tmp_path / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "watchers-bot tests", "language": "python",
    }))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("WATCHERS_ROOM", ROOM)
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    return tmp_path


def load():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    return nb, {cell.id: index for index, cell in enumerate(nb.cells)}


def client_for(nb):
    return nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=WAIT, startup_timeout=60)


def text_of(cell):
    """Everything a cell showed: streams, results (text/plain), errors."""
    text = ""
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            # as printed: the kernel may cut one print() into several stream outputs
            text += out.text
            continue
        if out.output_type in ("execute_result", "display_data"):
            shown = out.data.get("text/plain", "")
        elif out.output_type == "error":
            shown = f"{out.ename}: {out.evalue}"
        else:
            continue
        text += ("\n" if text and not text.endswith("\n") else "") + shown + "\n"
    return text


def run_code(client, code):
    """Execute ``code`` in the kernel as an extra cell, appended to the notebook
    (nbclient stores executed cells back by index); returns the executed cell."""
    client.nb.cells.append(nbformat.v4.new_code_cell(code))
    return client.async_execute_cell(client.nb.cells[-1], len(client.nb.cells) - 1)


async def in_thread(fn, *args):
    return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def human(emulator, texts):
    """Post ``texts`` as soon as a bot listens to ROOM (on a thread; join it)."""
    errors = []

    def talk():
        try:
            emulator.wait_for_listeners(ROOM, timeout=WAIT)
            for text in texts:
                emulator.post(ROOM, text, user_id="alice")
        except Exception as exc:  # reported by join()
            errors.append(exc)

    thread = threading.Thread(target=talk, daemon=True)
    thread.start()

    def join():
        thread.join(WAIT)
        assert not thread.is_alive()
        if errors:
            raise errors[0]

    return join


def test_notebook_runs_and_an_interrupted_loop_leaves_no_zombie(
    kernel_env, watchers_emulator, watchers_credentials
):
    emu = watchers_emulator
    nb, at = load()
    client = client_for(nb)
    secrets = (watchers_credentials.token, watchers_credentials.api_key)

    async def scenario():
        async with client.async_setup_kernel():
            join_human = human(emu, ["one", "two", "three"])
            for cell_id in ("imports", "create", "read", "send", "status", "close"):
                await client.async_execute_cell(nb.cells[at[cell_id]], at[cell_id])
            join_human()

            # The echo loop blocks until the kernel is interrupted.
            loop_cell = copy.deepcopy(nb.cells[at["echo-loop"]])
            loop_cell.metadata.setdefault("tags", []).append("raises-exception")
            running = asyncio.ensure_future(client.async_execute_cell(loop_cell, at["echo-loop"]))
            await in_thread(emu.wait_for_listeners, ROOM, 1, WAIT)
            emu.post(ROOM, "ping", user_id="alice")
            echoes = await in_thread(emu.wait_for_sent, 2, WAIT)
            assert echoes[-1].text == "echo: ping"
            await client.km.interrupt_kernel()
            await asyncio.wait_for(running, WAIT)
            # No zombie: leaving the with block closed the bot, and the kernel still works.
            await in_thread(emu.wait_for_clients, 0, WAIT)
            after = await run_code(client, "print(echo_bot.state, 6 * 7)")
            return loop_cell, after

    loop_cell, after = asyncio.run(scenario())

    created = text_of(nb.cells[at["create"]])
    assert f"state='connected' bot_id='{watchers_credentials.bot_id}' rooms=['{ROOM}']" in created
    assert watchers_credentials.url in created
    assert text_of(nb.cells[at["read"]]).splitlines() == ["alice: one", "alice: two",
                                                          "alice: three"]
    assert emu.sent[0].text == "Thanks, I read 3 message(s)."
    status = text_of(nb.cells[at["status"]])
    assert "Health(state='connected', ok=True" in status
    assert "state='closed'" in text_of(nb.cells[at["close"]])
    assert "KeyboardInterrupt" in text_of(loop_cell)
    assert text_of(after).strip() == "closed 42"
    outputs = json.dumps([cell.get("outputs") for cell in nb.cells])
    for secret in secrets:
        assert secret not in outputs
    assert "Warning" not in outputs  # one bot at a time in a straight run


RECORD_STATES = """\
import gc
from watchers_bot import Bot
def record(old, new, path={path!r}):
    with open(path, "a") as f:
        f.write(new + "\\n")
for b in [o for o in gc.get_objects() if isinstance(o, Bot)]:
    b.on_state_change(record)
"""


def test_rerun_cell_warns_and_restart_or_shutdown_closes_open_bots(kernel_env, watchers_emulator):
    emu = watchers_emulator
    nb, at = load()
    client = client_for(nb)
    log = kernel_env / "states.log"
    record = RECORD_STATES.format(path=str(log))

    async def run_cell(cell_id):
        cell = await client.async_execute_cell(nb.cells[at[cell_id]], at[cell_id])
        return text_of(cell)

    async def scenario():
        async with client.async_setup_kernel():
            await run_cell("imports")
            first = await run_cell("create")
            second = await run_cell("create")  # "run the cell again"
            third = await run_cell("create")  # and again: warned again
            assert len(await in_thread(emu.wait_for_listeners, ROOM, 3, WAIT)) == 3
            # The three bots stay open in the kernel; record their state changes.
            await run_code(client, record)
            # Restart the kernel: every bot is closed on the way out.
            await client.km.restart_kernel()
            await in_thread(emu.wait_for_clients, 0, WAIT)
            assert log.read_text().splitlines() == ["closed"] * 3
            # The fresh kernel has no bot left over: no warning.
            await run_cell("imports")
            fresh = await run_cell("create")
            await run_code(client, record)
            return first, second, third, fresh
        # Leaving async_setup_kernel shuts the kernel down (gracefully).

    first, second, third, fresh = asyncio.run(scenario())
    assert "DuplicateBotWarning" not in first
    assert "DuplicateBotWarning" not in fresh
    for output in (second, third):
        assert "DuplicateBotWarning: another open Bot in this process is connected to" in output
        assert "Close the old one (bot.close()) or reuse it." in output
    # The kernel closed its bot on its way out (atexit), through close(), which
    # disconnects properly, instead of leaving a dead socket behind.
    emu.wait_for_clients(0, timeout=WAIT)
    assert log.read_text().splitlines() == ["closed"] * 4


POOL_CELL = """\
from watchers_bot import Bot
def answer(msg):
    return "pool: " + msg.text
with Bot.from_env() as pool_bot:
    pool_bot.listen({room!r})
    pool_bot.run(answer, workers=4)
"""

THREADS_CELL = """\
import threading
print(pool_bot.state, sorted(t.name for t in threading.enumerate()
                             if t.name.startswith("watchers")), 6 * 7)
"""


def test_interrupting_bot_run_stops_the_pool_and_the_kernel_stays_usable(
    kernel_env, watchers_emulator
):
    emu = watchers_emulator
    nb = nbformat.v4.new_notebook()
    client = client_for(nb)

    async def scenario():
        async with client.async_setup_kernel():
            nb.cells.append(nbformat.v4.new_code_cell(POOL_CELL.format(room=ROOM)))
            running = asyncio.ensure_future(client.async_execute_cell(nb.cells[-1], 0))
            await in_thread(emu.wait_for_listeners, ROOM, 1, WAIT)
            emu.post(ROOM, "ping", user_id="alice")
            replies = await in_thread(emu.wait_for_sent, 1, WAIT)
            await client.km.interrupt_kernel()
            run_cell = await asyncio.wait_for(running, WAIT)
            await in_thread(emu.wait_for_clients, 0, WAIT)
            after = await run_code(client, THREADS_CELL)
            return replies, run_cell, after

    replies, run_cell, after = asyncio.run(scenario())
    assert replies[0].text == "pool: ping"
    # Ctrl-C ends run() cleanly (it returns: no traceback in the cell), the with block
    # closes the bot, and no thread of the library is left.
    assert [out.output_type for out in run_cell.outputs] == [], run_cell.outputs
    assert text_of(after).strip() == "closed [] 42"

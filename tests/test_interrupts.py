"""Signals act between model steps (sim.interrupts): an exception a signal handler raises stops
a sweep instead of being recorded as a failed run, and never surfaces from a compiled kernel as
a ``SystemError``. Found on SLURM, where submitit's time-limit handler (SIGUSR2) raised inside
a run: the run was stored as failed with "CPUDispatcher(...) returned a result with an
exception set" and the job carried on until it was killed."""

from __future__ import annotations

import signal

import pandas as pd
import pytest

from sim import interrupts
from sim.api import simulate
from sim.config import Config
from sim.sweep import Design, run_sweep
from sim.sweep.engine import Task, execute, simulate_table

from .test_sweep import small_spec, tiny_base


class Stop(RuntimeError):
    """What submitit's handler raises: an ordinary Exception, not a KeyboardInterrupt."""


def _stop(signum: int, frame: object) -> None:
    raise Stop(f"received {signal.Signals(signum).name}")


@pytest.fixture
def alarm_raises():
    """SIGALRM's handler raises :class:`Stop`; the old handler and timer are restored after."""
    old = signal.signal(signal.SIGALRM, _stop)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_a_signal_inside_deferred_waits_for_the_checkpoint(alarm_raises):
    with interrupts.deferred():
        signal.raise_signal(signal.SIGALRM)  # queued: nothing raised here
        with pytest.raises(Stop) as caught:
            interrupts.checkpoint()
        assert interrupts.raised_by_signal(caught.value) is caught.value
        wrapped = SystemError("CPUDispatcher(f) returned a result with an exception set")
        wrapped.__cause__ = caught.value
        assert interrupts.raised_by_signal(wrapped) is caught.value
        assert interrupts.raised_by_signal(RuntimeError("a run's own error")) is None
    assert signal.getsignal(signal.SIGALRM) is not None
    assert not hasattr(signal.getsignal(signal.SIGALRM), "__wrapped__")  # handler restored


def test_a_signal_still_queued_on_leaving_is_delivered(alarm_raises):
    with pytest.raises(Stop), interrupts.deferred():
        signal.raise_signal(signal.SIGALRM)


def test_an_interrupt_inside_compiled_code_is_recognised_outside_deferred():
    inner = KeyboardInterrupt()
    outer = SystemError("<function _numba_unpickle> returned a result with an exception set")
    outer.__context__ = SystemError("CPUDispatcher(f) returned a result with an exception set")
    outer.__context__.__cause__ = inner
    assert interrupts.raised_by_signal(outer) is inner


def test_a_timer_firing_during_runs_stops_them_and_never_fails_one(alarm_raises):
    """The alarm lands at a random point of a run, often inside a numba kernel; before the
    fix, some runs came back as failed with a SystemError (and the interpreter once crashed)."""
    task = Task(0, 0, 0, tiny_base(steps=200), False, simulate_table)
    execute(task)  # compile first, so the alarms land in runs
    stopped = 0
    with interrupts.deferred():
        for i in range(12):
            signal.setitimer(signal.ITIMER_REAL, 0.002 + 0.004 * i)
            try:
                while True:
                    row, _ = execute(task)
                    assert row["status"] == "ok", row["error"]
            except Stop:
                stopped += 1
    assert stopped == 12


def test_ctrl_c_during_simulate_is_a_keyboard_interrupt_between_steps():
    seen = []

    def press_ctrl_c(done: int) -> None:
        seen.append(done)
        if done == 3:
            signal.raise_signal(signal.SIGINT)

    # A shell that starts a job in the background (`make test &`) starts it with SIGINT
    # ignored, and Python then keeps SIG_IGN; the test needs Python's usual Ctrl-C handler.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            simulate(steps=50, seed=1, config=tiny_base(steps=50), progress=press_ctrl_c)
        assert seen == [1, 2, 3]  # the step under way finished; the next never started
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous)


def signalling_runner(config: Config) -> pd.DataFrame:
    """Runs normally, except that the run at coupling 0.5 receives SIGALRM halfway."""
    if config.model.coupling == 0.5:
        signal.raise_signal(signal.SIGALRM)
    return simulate_table(config)


def test_a_sweep_stopped_by_a_signal_keeps_its_runs_ok_and_resumes(tmp_path, alarm_raises):
    design = Design(small_spec(replicates=1), tiny_base())
    with pytest.raises(Stop):
        run_sweep(design, tmp_path / "s", runner=signalling_runner)
    parts = (tmp_path / "s" / "parts").glob("runs-*.parquet")
    saved = pd.concat(pd.read_parquet(p) for p in parts)
    assert len(saved) >= 1 and (saved["status"] == "ok").all()
    assert (saved["model.coupling"] == 0.0).all()  # nothing from the run that was stopped
    resumed = run_sweep(design, tmp_path / "s")
    assert resumed.ok and resumed.resumed == len(saved)
    reference = run_sweep(design, tmp_path / "ref")
    assert reference.ok
    pd.testing.assert_frame_equal(
        pd.read_parquet(tmp_path / "s" / "runs.parquet"),
        pd.read_parquet(tmp_path / "ref" / "runs.parquet"),
    )

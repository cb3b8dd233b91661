"""Into a log file, a bar writes a line at each tenth and at least every 30 s."""

from luminary.core import progress


def test_a_bar_into_a_log_file_writes_a_line_per_tenth(monkeypatch, capsys):
    monkeypatch.setenv("LUMINARY_QUIET", "0")
    with progress.progress_bar("train", 50) as bar:
        for _ in range(50):
            bar.advance(1, info="loss 1.0")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0].startswith("train: 0/50 (0%)")
    assert [line.split()[1] for line in lines] == ["0/50"] + [f"{5 * k}/50" for k in range(1, 11)]
    assert lines[-1].startswith("train: 50/50 (100%) loss 1.0, ")


def test_a_slow_bar_writes_a_line_every_30_s(monkeypatch, capsys):
    monkeypatch.setenv("LUMINARY_QUIET", "0")
    clock = iter([0.0, 0.0, 10.0, 31.0, 40.0, 62.0, 62.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    with progress.progress_bar("search", None) as bar:  # no total: by time only
        for _ in range(4):
            bar.advance(1)
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(",")[0] for line in lines] == ["search: 0", "search: 2", "search: 4"]


def test_quiet_writes_nothing(monkeypatch, capsys):
    monkeypatch.setenv("LUMINARY_QUIET", "1")
    with progress.progress_bar("train", 10) as bar:
        bar.advance(10)
    assert capsys.readouterr().err == ""

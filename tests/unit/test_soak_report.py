"""The soak report's memory lines: the RSS series is summarised evenly, its last sample always shown."""

from soak import Report, _spread


def test_spread_keeps_first_and_last_and_spaces_the_rest_evenly():
    samples = [(float(k), k * 10, 1000 + k) for k in range(100)]
    picked = _spread(samples, 12)
    assert len(picked) == 12
    assert picked[0] == samples[0] and picked[-1] == samples[-1]
    gaps = {b[0] - a[0] for a, b in zip(picked, picked[1:])}
    assert max(gaps) - min(gaps) <= 1


def test_spread_returns_a_short_series_whole():
    samples = [(1.0, 10, 500), (2.0, 20, 510)]
    assert _spread(samples, 12) == samples


def test_report_names_the_peak_and_the_series():
    report = Report(rss_after_warmup_kb=1000, rss_after_run_kb=1100,
                    rss_samples=[(5.0, 100, 900), (10.0, 200, 1300), (15.0, 300, 1100)])
    memory = [line for line in report.lines() if line.startswith("hub RSS")]
    assert memory[0].endswith("(1.10x); peak 1300 kB")
    assert memory[1] == "hub RSS over the run (s, webhooks sent, kB): 5/100/900, 10/200/1300, 15/300/1100"

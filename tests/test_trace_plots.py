"""The moving-statistics figure's series: the momentum prediction lands on TensorFlow's values."""
import numpy as np

from bnrepro.trace.plots import moving_statistic_series, plot_moving_statistics


def test_prediction_matches_stored_and_lags_the_batch(cubic_trace):
    steps, batch, stored, predicted = moving_statistic_series(
        cubic_trace, "batch_normalization", "moving_mean")
    assert steps.tolist() == list(range(1, 11))
    np.testing.assert_allclose(predicted, stored, rtol=1e-6)
    assert np.all(stored < batch)  # from 0 at momentum 0.9 the moving mean trails every batch mean


def test_figure_has_both_panels(cubic_trace, tmp_path):
    figure = plot_moving_statistics(cubic_trace)
    assert [axis.get_ylabel() for axis in figure.axes] == ["moving_mean", "moving_variance"]
    figure.savefig(tmp_path / "figure.png")
    assert (tmp_path / "figure.png").stat().st_size > 10_000

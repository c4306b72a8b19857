"""The error estimate's interval on skewed errors: squared errors over targets are skewed (a
few targets carry most of the error), where a plain percentile bootstrap of their mean sits
low. A population of log-normal squared errors (sigma 1.5), 300 samples of 1000 of its 15 000
values: the bias-corrected and accelerated interval covered the population's relative error in
0.933 of them (the plain percentile interval 0.913); held at 0.92, and the estimate unbiased in
the numerator (the mean of the estimates' squares within 2 % of the truth's square)."""

import numpy as np

from fmmloopy.api.error_estimate import estimate_from_errors


def test_the_interval_covers_skewed_errors_nearly_as_often_as_it_says():
    rng = np.random.default_rng(5)
    population = rng.lognormal(0.0, 1.5, 15_000)
    norm_squared = 1e4 * population.sum()
    truth = np.sqrt(population.sum() / norm_squared)
    draws = np.random.default_rng(1)
    covered, squares = 0, []
    for _ in range(300):
        sample = draws.choice(len(population), 1000, replace=False)
        estimate = estimate_from_errors(population[sample], norm_squared, len(population), draws)
        covered += estimate.low <= truth <= estimate.high
        squares.append(estimate.relative_l2 ** 2)
    assert covered / 300 >= 0.92
    assert abs(np.mean(squares) / truth ** 2 - 1.0) <= 0.02

#!/usr/bin/python3
"""The statistics of tools/study_report.py against their definitions.

    /usr/bin/python3 tests/study_report_test.py   (ctest: study_report_statistics)

Holm's adjustment against a family worked by hand; the paired comparison
against scipy's paired t-test and against the two one-sided tests written out
from their definitions; the verdict's four outcomes.
"""

import math
import os
import sys
import unittest

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools"))
import study_report as report  # noqa: E402


class Holm(unittest.TestCase):
    def test_a_family_worked_by_hand(self):
        # Sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.5 (x1 = 0.5).
        adjusted = report.holm([0.03, 0.5, 0.01, 0.02])
        np.testing.assert_allclose(adjusted, [0.06, 0.5, 0.04, 0.06])

    def test_adjusted_values_never_decrease_with_rank_and_never_exceed_one(self):
        # The smaller, 0.03, becomes 0.03·2 = 0.06; the larger, 0.04·1, is raised to 0.06.
        np.testing.assert_allclose(report.holm([0.04, 0.03]), [0.06, 0.06])
        np.testing.assert_allclose(report.holm([0.9, 0.8]), [1.0, 1.0])


class Paired(unittest.TestCase):
    a = [0.50, 0.61, 0.47, 0.55, 0.58, 0.49, 0.52, 0.60, 0.54, 0.51]
    b = [0.52, 0.66, 0.50, 0.55, 0.63, 0.50, 0.55, 0.64, 0.58, 0.52]

    def test_difference_interval_and_p_value_are_the_paired_t_tests(self):
        c = report.paired(self.a, self.b, 0.05, True, False)
        d = np.subtract(self.a, self.b)
        self.assertAlmostEqual(c["diff"], d.mean(), places=14)
        self.assertAlmostEqual(c["p"], stats.ttest_rel(self.a, self.b).pvalue, places=12)
        half = stats.t.ppf(0.975, 9) * d.std(ddof=1) / math.sqrt(10)
        self.assertAlmostEqual(c["lo"], d.mean() - half, places=14)
        self.assertAlmostEqual(c["hi"], d.mean() + half, places=14)
        self.assertTrue(c["adamx_better"])  # lower is better and AdamX is lower

    def test_equivalence_is_the_larger_of_the_two_one_sided_p_values(self):
        c = report.paired(self.a, self.b, 0.05, True, False)
        delta = 0.05 * abs(np.mean(self.b))
        self.assertAlmostEqual(c["delta"], delta, places=14)
        d = np.subtract(self.a, self.b)
        # H0: mean d <= -δ against mean d > -δ, and H0: mean d >= δ against mean d < δ.
        p_low = stats.ttest_1samp(d, -delta, alternative="greater").pvalue
        p_high = stats.ttest_1samp(d, delta, alternative="less").pvalue
        self.assertAlmostEqual(c["p_tost"], max(p_low, p_high), places=12)

    def test_an_absolute_margin_is_used_as_given(self):
        self.assertEqual(report.paired(self.a, self.b, 0.02, False, False)["delta"], 0.02)

    def test_higher_is_better_turns_the_direction(self):
        self.assertFalse(report.paired(self.a, self.b, 0.05, True, True)["adamx_better"])

    def test_identical_differences_decide_without_a_variance(self):
        c = report.paired([1.0, 2.0, 3.0], [1.5, 2.5, 3.5], 0.1, False, False)
        self.assertEqual(c["p"], 0.0)
        self.assertEqual(c["p_tost"], 1.0)  # |−0.5| is outside ±0.1
        same = report.paired([1.0, 2.0], [1.0, 2.0], 0.1, False, False)
        self.assertEqual(same["p"], 1.0)
        self.assertEqual(same["p_tost"], 0.0)


class Verdict(unittest.TestCase):
    def test_each_outcome(self):
        base = {"adamx_better": True}
        self.assertEqual(report.verdict(dict(base, p_holm=0.001, p_tost_holm=0.01)), "tie")
        self.assertEqual(report.verdict(dict(base, p_holm=0.001, p_tost_holm=0.5)), "win")
        self.assertEqual(report.verdict(dict(base, adamx_better=False, p_holm=0.001, p_tost_holm=0.5)), "loss")
        self.assertEqual(report.verdict(dict(base, p_holm=0.2, p_tost_holm=0.2)), "inconclusive")


class Measures(unittest.TestCase):
    def test_steps_to_target_is_the_first_step_at_or_past_it(self):
        curve = (np.array([10, 20, 30, 40]), np.array([0.9, 0.5, 0.3, 0.35]))
        self.assertEqual(report.steps_to_target(curve, 0.5, False, 40), 20)
        self.assertEqual(report.steps_to_target(curve, 0.1, False, 40), 41)  # never: one past the end
        self.assertEqual(report.steps_to_target(curve, 0.8, True, 40), 10)

    def test_step_spread_is_the_deviation_of_log10_steps_after_the_first_tenth(self):
        values = np.array([100.0, 100.0] + [1.0, 10.0] * 10)  # 22 points: the first 2 are dropped
        run = {"step/a": (np.arange(22), values), "metric": (np.arange(22), values)}
        expected = np.std(np.log10(values[2:]), ddof=1)
        self.assertAlmostEqual(report.step_spread(run), expected, places=14)


class Formatting(unittest.TestCase):
    def test_a_relative_effect_is_a_signed_percentage(self):
        self.assertEqual(report.percent(-0.2634), "-26.3 %")
        self.assertEqual(report.percent(0.0), "+0.0 %")

    def test_no_ratio_against_a_zero_baseline_mean(self):
        # The comparison gives nan when the baseline's mean is 0 (a GAN optimizer that covered no mode).
        self.assertEqual(report.percent(float("nan")), "n/a")


if __name__ == "__main__":
    unittest.main()

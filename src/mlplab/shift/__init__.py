"""Distribution shift (d2l 4.9): generate, detect and correct covariate, label and concept shift.

Stable public API:

- :func:`estimate_label_shift` ``(source_probs, source_labels, target_probs, method="bbse")`` ->
  ``w`` (k,) with ``w_y = q(y) / p(y)``; methods ``bbse``, ``bbse_soft``, ``em``, optionally
  after ``calibration="ts"`` or ``"bcts"``. :func:`fit_label_shift` returns the same with
  diagnostics; :func:`adjust_predictions` applies ``w`` to predicted probabilities.
- :func:`covariate_weights` ``(source_X, target_X, clip=...)`` -> ``beta`` (n_source,), the book's
  domain-classifier estimate of ``q(x) / p(x)``; :func:`effective_sample_size` of any weights.
- :func:`fit_weighted`: train an MLP with per-example loss weights (either correction).
- Shift generators: :func:`dirichlet_priors`, :func:`tweak_one_priors`, :func:`knock_out_priors`,
  :func:`sample_by_priors`, :func:`covariate_shift_split`, :func:`concept_mapping`, :func:`relabel`.
- The study: :func:`run_study` and its parts (:mod:`mlplab.shift.experiment`), :func:`mean_ci`.
"""

from mlplab.shift.concept import CONCEPT_MODES, LearningCurve, concept_learning_curves
from mlplab.shift.covariate import (
    DEFAULT_CLIP,
    DomainClassifier,
    covariate_weights,
    effective_sample_size,
    fit_domain_classifier,
)
from mlplab.shift.experiment import (
    ConceptShiftConfig,
    CovariateShiftConfig,
    LabelShiftConfig,
    PartResult,
    SourceConfig,
    StudyConfig,
    concept_shift_study,
    covariate_shift_study,
    gaussian_regression_study,
    label_shift_study,
    run_study,
    summarize,
    train_source,
)
from mlplab.shift.generate import (
    LABEL_SHIFTS,
    concept_mapping,
    covariate_shift_split,
    dirichlet_priors,
    image_statistic,
    knock_out_priors,
    label_shift_priors,
    relabel,
    sample_by_priors,
    tweak_one_priors,
)
from mlplab.shift.inputs import ShiftInputError
from mlplab.shift.label import (
    CALIBRATIONS,
    LABEL_SHIFT_METHODS,
    Calibration,
    IllConditionedWarning,
    LabelShiftEstimate,
    adjust_predictions,
    confusion_matrix,
    em_priors,
    estimate_label_shift,
    fit_calibration,
    fit_label_shift,
    weight_error,
)
from mlplab.shift.weighted import fit_weighted
from mlplab.stats import MeanCI, mean_ci

__all__ = [
    "CALIBRATIONS", "CONCEPT_MODES", "Calibration", "ConceptShiftConfig", "CovariateShiftConfig",
    "DEFAULT_CLIP", "DomainClassifier", "IllConditionedWarning", "LABEL_SHIFTS", "LABEL_SHIFT_METHODS",
    "LabelShiftConfig", "LabelShiftEstimate", "LearningCurve", "MeanCI", "PartResult", "ShiftInputError",
    "SourceConfig", "StudyConfig", "adjust_predictions", "concept_learning_curves", "concept_mapping",
    "concept_shift_study", "confusion_matrix", "covariate_shift_split", "covariate_shift_study",
    "covariate_weights", "dirichlet_priors", "effective_sample_size", "em_priors", "estimate_label_shift",
    "fit_calibration", "fit_domain_classifier", "fit_label_shift", "fit_weighted",
    "gaussian_regression_study", "image_statistic", "knock_out_priors", "label_shift_priors",
    "label_shift_study", "mean_ci", "relabel", "run_study", "sample_by_priors", "summarize",
    "train_source", "tweak_one_priors", "weight_error",
]  # fmt: skip

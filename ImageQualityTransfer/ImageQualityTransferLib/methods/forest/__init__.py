"""IQT-RF, Bayesian IQT-RF and the global-linear map (Alexander et al. 2014/2017; Tanno et al. 2016).

numpy-only: patch library (`patches`), rotation-invariant split features (`features`), linear and
Bayesian linear node models (`linear`, `bayes`), regression trees with linear leaves and a fast split
search from sufficient statistics (`tree`), forests (`forest`), completion of patches that reach outside
the data (`completion`), safe model files (`model_io`) and training (`training`).

Working domain: tensors in units of 1e-3 mm^2/s (`SCALE`; with the input unit "md-mode", in units of the input's MD
mode over 0.7e-3 mm^2/s, the target too), axes canonical (RAS) as `Method.predict`
feeds them; the regression target is the residual of the high-res reference over cubic B-spline
interpolation of the low-res input, per r^3 block (r^3 x 6 values, block-major then element); the prediction
is the cubic interpolation plus the model's output. Model sidecars say so ("target": "residual-over-cubic")
and name the regressors ("inputs": "patch", or "patch+cubic" with the cubic values of the block appended;
the shipped models use the patch alone, see `training.DEFAULTS`).
"""

SCALE = 1e3  # mm^2/s -> 1e-3 mm^2/s (white matter MD about 0.7)
# Input units ("input_unit" in the sidecar): "fixed" works in SCALE's units; "md-mode" divides each input (and its target)
# by the input's MD mode over 0.7e-3 mm^2/s (tensors.md_mode, as the CNNs do), so that b-value and scanner differences
# in overall diffusivity drop out. docs/measurements.md, Shipped models.
from ...fileio.train_options import INPUT_UNITS  # noqa: E402,F401 (defined with iqt train's --input-unit)
MD_REFERENCE = 0.7e-3  # mm^2/s: the MD an "md-mode" input's mode is brought to

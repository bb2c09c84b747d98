"""The main job: from clean images to scored denoisers, with a report (``naflow-aug demo``).

``run_demo(out)`` wires the library's jobs together in one run directory:

1. data (:mod:`.data`): the simulated camera (:mod:`naflow_aug.data.simcam`, SIDD-Medium layout) or a
   real SIDD-Medium folder, split by scene instance into training, held-out test and calibration
   instances (``data/split.toml``; ``data/train`` is a view of the training instances);
2. the fitted baselines (Gaussian / Poisson-Gaussian per configuration) of the training pairs;
3. NAFlow trained on the training instances (:func:`naflow_aug.train.train`, cpu preset), or a given
   model, while the denoisers of the sources that need no NAFlow train beside it (:mod:`.workers`);
4. a noise profile calibrated from the calibration pairs of one camera (:mod:`naflow_aug.noise.profiles`);
5. noise quality on the held-out pairs (:mod:`naflow_aug.evaluate`): KLD / AKLD per sampling seed,
   posterior accuracy;
6. an HDF5 of synthetic NAS pairs of the training images (:func:`naflow_aug.generate.generate`);
7. one DnCNN per noise source and seed, scored on the held-out pairs and summarised over the seeds
   (:mod:`.denoisers`: :func:`naflow_aug.bench.run_benchmark`, :mod:`naflow_aug.bench.seeds`);
8. the report (:mod:`.report`, :mod:`.figures`): ``report.html`` with figures in ``figures/``,
   ``report.md``, ``results.json``; ``timings.json`` holds each stage's wall and CPU seconds.

Every stage leaves its output in the run directory; ``resume=True`` skips the finished stages and
continues the interrupted ones (NAFlow training, HDF5 generation and denoiser training resume exactly).
"""

from naflow_aug.demo.run import run_demo
from naflow_aug.demo.sizes import SIZES, DemoSize

__all__ = ["SIZES", "DemoSize", "run_demo"]

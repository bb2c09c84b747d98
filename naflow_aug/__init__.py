"""naflow-aug: realistic camera noise from a frozen NAFlow, as transforms, datasets and benchmarks."""

__version__ = "0.1.0"

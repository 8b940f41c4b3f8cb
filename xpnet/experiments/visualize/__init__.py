"""Pictures: the slides' activation functions with their derivatives, and what a saved model learned.

Everything drawn is computed by xpnet itself on the chosen backend and device, and moved to the
host (`xpnet.backend.to_numpy`) only to be plotted: the activations by `xpnet.nn.functions`, their
derivatives by the layers' backward passes, a model's predictions by the model. Each picture is
written with the arrays it shows beside it (an .npz of the same name), so the numbers can be
checked. `activations` draws the first, `model` the second, `plots` the grids and files; the
command line is `xpnet.apps.visualize` (``python scripts/visualize.py --help``).
"""

from .activations import (
    ACTIVATIONS,
    ActivationCurves,
    activation_curves,
    activation_outputs,
    compute_activations,
    draw_activations,
    plot_activations,
)
from .model import (
    Misclassified,
    ModelPictures,
    check_prefix,
    describe_model,
    draw_model,
    filters_as_images,
    find_misclassified,
    guess_image_shape,
    initial_network,
    model_folder,
    model_outputs,
)
from .plots import plot_filters, plot_misclassified, tile

__all__ = [
    "ACTIVATIONS",
    "ActivationCurves",
    "Misclassified",
    "ModelPictures",
    "activation_curves",
    "activation_outputs",
    "check_prefix",
    "compute_activations",
    "describe_model",
    "draw_activations",
    "draw_model",
    "filters_as_images",
    "find_misclassified",
    "guess_image_shape",
    "initial_network",
    "model_folder",
    "model_outputs",
    "plot_activations",
    "plot_filters",
    "plot_misclassified",
    "tile",
]

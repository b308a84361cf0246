"""From scratch: an MLP whose backward pass is written by hand, verified against autograd.

Plain torch tensors, no autograd anywhere: each activation beside its derivative
(:mod:`~mlplab.scratch.activations`), a stable softmax cross-entropy and its gradient
(:mod:`~mlplab.scratch.losses`), inverted dropout (:mod:`~mlplab.scratch.dropout`), L2/L1
penalties (:mod:`~mlplab.scratch.regularization`), initializers (:mod:`~mlplab.scratch.init`),
the :class:`MLP` with its explicit chain rule (:mod:`~mlplab.scratch.mlp`) and in-place
:class:`SGD` with weight decay (:mod:`~mlplab.scratch.sgd`).

``mlplab.train.fit`` trains an :class:`MLP` like a concise model: it sees ``loss_and_grads`` and
steps with :class:`SGD` instead of autograd.

>>> import torch
>>> from mlplab.scratch import MLP, SGD
>>> net = MLP([784, 256, 10], generator=torch.Generator().manual_seed(0))
>>> opt = SGD(net.params, lr=0.1)
>>> loss, grads = net.loss_and_grads(torch.rand(8, 784), torch.randint(10, (8,)))
>>> opt.step(grads)
"""

from mlplab.scratch.activations import (
    prelu,
    prelu_grad,
    prelu_grad_alpha,
    relu,
    relu_grad,
    sigmoid,
    sigmoid_grad,
    tanh,
    tanh_grad,
)
from mlplab.scratch.dropout import dropout, dropout_grad, keep_mask
from mlplab.scratch.init import he, init_weight, normal, xavier_normal, xavier_uniform
from mlplab.scratch.losses import (
    log_softmax,
    softmax_cross_entropy,
    softmax_cross_entropy_and_grad,
    softmax_cross_entropy_grad,
)
from mlplab.scratch.mlp import MLP, LayerTape, Tape
from mlplab.scratch.regularization import l1_penalty, l1_subgrad, l2_grad, l2_penalty
from mlplab.scratch.sgd import SGD

__all__ = [
    "MLP",
    "SGD",
    "LayerTape",
    "Tape",
    "relu",
    "relu_grad",
    "sigmoid",
    "sigmoid_grad",
    "tanh",
    "tanh_grad",
    "prelu",
    "prelu_grad",
    "prelu_grad_alpha",
    "log_softmax",
    "softmax_cross_entropy",
    "softmax_cross_entropy_grad",
    "softmax_cross_entropy_and_grad",
    "dropout",
    "dropout_grad",
    "keep_mask",
    "l2_penalty",
    "l2_grad",
    "l1_penalty",
    "l1_subgrad",
    "init_weight",
    "normal",
    "xavier_uniform",
    "xavier_normal",
    "he",
]

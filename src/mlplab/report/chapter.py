"""The chapter as the report walks it: sections, the study log's questions, and the verdicts.

Each :class:`Section` names the parts that answer it (:mod:`mlplab.report.parts`) and the
questions it answers. A :class:`Question` quotes the study log (``../shared/seed/``, in Chinese,
with an English gloss) and the log's own answer; its ``judge`` reads the keyed conclusions of the
parts (``"PART:KEY"``, see :func:`mlplab.report.parts.findings`) and returns a :class:`Verdict`
on the log's answer, or None when a finding it needs was not drawn (a part skipped or failed). A
verdict's sentence is the finding's own, made from the runs: nothing here states a result.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from mlplab.experiments.base import Conclusion
from mlplab.report import parts as P

SUPPORTED = "supported"
NOT_SHOWN = "not supported by the data"
WRONG = "wrong"
PARTLY = "partly right"
ANSWERED = "answered"  # the log left the question open (or skipped it): the data answers it
STATUSES = (SUPPORTED, NOT_SHOWN, WRONG, PARTLY, ANSWERED)

Findings = Mapping[str, Conclusion]


@dataclass(frozen=True)
class Verdict:
    """What the data says of the log's answer: a status of :data:`STATUSES` and why."""

    status: str
    text: str


@dataclass(frozen=True)
class Question:
    """A question of the study log, the log's answer and the judge of that answer."""

    label: str  # where it is asked, e.g. "d2l 4.2, exercise 1"
    asked: str  # the log's words
    english: str
    answer: str  # the log's answer, quoted ("" when the log gave none)
    answer_english: str
    judge: Callable[[Findings], Verdict | None]


@dataclass(frozen=True)
class Section:
    """A section of the report: the book's section, the parts that answer it, its questions."""

    key: str  # the anchor and the name for --sections
    title: str
    book: str  # d2l's section numbers
    parts: tuple[tuple[str, P.PartRunner], ...]
    questions: tuple[Question, ...] = ()
    intro: str = ""


def needs(*keys: str) -> Callable[[Callable[..., Verdict | None]], Callable[[Findings], Verdict | None]]:
    """Make a judge of ``fn(conclusion, ...)``: it gets the findings ``keys`` (``"PART:KEY"``), or
    the judge returns None (no verdict) when one of them was not drawn."""

    def wrap(fn: Callable[..., Verdict | None]) -> Callable[[Findings], Verdict | None]:
        @functools.wraps(fn)
        def judge(findings: Findings) -> Verdict | None:
            found = [findings.get(key) for key in keys]
            return None if any(c is None for c in found) else fn(*found)

        return judge

    return wrap


# ---- the judges: each reads findings, none states a number of its own ------------------------


@needs("mlp-hidden:compare-widths")
def _widths(c: Conclusion) -> Verdict:
    smaller, winner = c.values["a"], c.values["winner"]
    return Verdict(SUPPORTED if winner == smaller else NOT_SHOWN if winner is None else WRONG, c.text)


@needs("mlp-depth:leave-chance", "mlp-depth:depth-budgets")
def _depth(chance: Conclusion, budgets: Conclusion) -> Verdict:
    first = {int(k): v for k, v in chance.values["first_epoch"].items()}
    one, three = first.get(1), first.get(3)
    slow = 3 in first and (three is None or (one is not None and three > one))
    return Verdict(SUPPORTED if slow else NOT_SHOWN, f"{chance.text}. Deeper or not: {budgets.text}")


@needs("mlp-lr:log-guess")
def _lr(c: Conclusion) -> Verdict:
    if c.values["best"] == c.values["guess"]:
        return Verdict(SUPPORTED, c.text)
    if c.values.get("winner") is None:
        return Verdict(NOT_SHOWN, f"{c.text}: the data does not single out 0.03")
    return Verdict(WRONG, c.text)


@needs("activation-checks:prelu-derivative")
def _prelu(c: Conclusion) -> Verdict:
    return Verdict(SUPPORTED if c.values["max_abs_difference"] < 1e-12 else WRONG, c.text)


@needs("activation-checks:tanh-identity")
def _tanh(c: Conclusion) -> Verdict:
    return Verdict(ANSWERED, c.text)


@needs("poly-fit:exact")
def _exact(c: Conclusion) -> Verdict:
    return Verdict(
        SUPPORTED,
        "yes: in the features x^i / i! it is linear least squares, solved exactly by numpy's lstsq; against it, "
        + c.text,
    )


@needs("poly-fit:unscaled-3", "poly-fit:unscaled-19")
def _unscaled(low: Conclusion, high: Conclusion) -> Verdict:
    diverged = ["diverged" in c.values["status"] for c in (low, high)]
    status = SUPPORTED if all(diverged) else PARTLY if any(diverged) else NOT_SHOWN
    return Verdict(status, f"{high.text}; but {low.text}")


@needs("l1-update:l1-update")
def _l1(c: Conclusion) -> Verdict:
    return Verdict(WRONG if c.values["log_error"] > 1e-12 else SUPPORTED, c.text)


@needs("dropout:q1-swap")
def _swap(c: Conclusion) -> Verdict:
    interchangeable, mean = c.values["interchangeable"], c.values["mean"]
    if interchangeable is False:  # the log: a large rate on the first (shallow) layer hurts more
        return Verdict(SUPPORTED if mean > 0 else WRONG, c.text)
    return Verdict(NOT_SHOWN, c.text)


@needs("dropout:q4-collapse")
def _collapse(c: Conclusion) -> Verdict:
    collapsed = c.values["decay_factor"] < 0 and c.values["at_chance"] == c.values["models"]
    return Verdict(SUPPORTED if collapsed else NOT_SHOWN, c.text)


@needs("dropout:q4-additive")
def _additive(c: Conclusion) -> Verdict | None:
    additive = c.values["additive"]
    return None if additive is None else Verdict(SUPPORTED if additive else NOT_SHOWN, c.text)


@needs("backprop:gradient-shape")
def _shape(c: Conclusion) -> Verdict:
    two_d = len(c.values["shape"]) == 2
    return Verdict(PARTLY if two_d else WRONG, f"two-dimensional, and more precisely n x m: {c.text}")


@needs("backprop:memory", "backprop:gradients")
def _memory(memory: Conclusion, grads: Conclusion) -> Verdict:
    return Verdict(SUPPORTED if memory.values["kept"] > 0 else NOT_SHOWN, f"{memory.text}. {grads.text}")


@needs("stability:sigmoid")
def _sigmoid(c: Conclusion) -> Verdict:
    return Verdict(SUPPORTED if c.values["max_derivative"] <= 0.25 + 1e-9 else WRONG, c.text)


@needs("stability:symmetry")
def _symmetry(c: Conclusion) -> Verdict:
    return Verdict(SUPPORTED if c.values["constant_stays_rank_1"] else NOT_SHOWN, c.text)


@needs("house:best-vs-baseline")
def _house(c: Conclusion) -> Verdict:
    return Verdict(ANSWERED, c.text)


@needs("best-mlp:test")
def _best(c: Conclusion) -> Verdict:
    low = c.values["mean"] - c.values["ci"]
    beaten = P.finite(low) and low > 0.88
    return Verdict(
        ANSWERED,
        c.text + ("; its whole 95% CI lies above the log's 0.88" if beaten else "; not above the log's 0.88 here"),
    )


# ---- the chapter ----------------------------------------------------------------------------

SECTIONS: tuple[Section, ...] = (
    Section(
        "mlp",
        "Multilayer perceptrons: width, depth, learning rate, activations",
        "d2l 4.1-4.3",
        (("activation-checks", P.activation_checks), ("mlp-hidden", P.experiment("mlp-hidden")),
         ("mlp-depth", P.experiment("mlp-depth")), ("mlp-lr", P.experiment("mlp-lr")),
         ("activations", P.experiment("activations"))),
        (
            Question("d2l 4.1, exercise 1", "计算pReLU激活函数的导数。", "Compute the derivative of the pReLU activation.",
                     "1, x ≥ 0；α, x < 0", "1 for x >= 0, alpha for x < 0", _prelu),
            Question("d2l 4.1, exercise 3", "证明tanh(x) + 1 = 2 sigmoid(2x)。", "Show that tanh(x) + 1 = 2 sigmoid(2x).",
                     "略。", "skipped", _tanh),
            Question("d2l 4.2, exercise 1",
                     "在所有其他参数保持不变的情况下，更改超参数num_hiddens的值，并查看此超参数的变化对结果有何影响。确定此超参数的最佳值。",
                     "Change num_hiddens, all else fixed: how does it affect the result? Find its best value.",
                     "num_hiddens = 1024：……此时准确值就有点下降了。", "at 1024 the accuracy dropped a little", _widths),
            Question("d2l 4.2, exercise 2", "尝试添加更多的隐藏层，并查看它对结果有何影响。",
                     "Add more hidden layers: how does it affect the result?",
                     "经过了30次迭代后命中率达到了88%……不太确定新的模型是不是比之前更优，但是遇到了深度学习网络起步阶段命中率较低的现象。",
                     "three hidden layers reach 88% after 30 epochs; not sure it is better, but it starts near chance",
                     _depth),
            Question("d2l 4.2, exercise 3",
                     "改变学习速率会如何影响结果？保持模型架构和其他超参数（包括轮数）不变，学习率设置为多少会带来最好的结果？",
                     "How does the learning rate change the result? All else fixed, which learning rate is best?",
                     "试了下差不多0.03效果最好", "about 0.03 worked best", _lr),
        ),
    ),
    Section(
        "model-selection",
        "Model selection: polynomial under- and overfitting",
        "d2l 4.4",
        (("poly-fit", P.experiment("poly-fit")),),
        (
            Question("d2l 4.4, exercise 1", "这个多项式回归问题可以准确解出来吗？", "Can this polynomial regression be solved exactly?",
                     "将多项式回归看做关于x^0, x^1, x^2, ...的线性回归，直接套公式。",
                     "treat it as linear regression in x^0, x^1, x^2, ... and apply the formula", _exact),
            Question("d2l 4.4, exercise 3", "如果不对多项式特征进行标准化会发生什么？",
                     "What happens without the 1/i! scaling of the polynomial features?",
                     "阶数越高的特征对于模型的影响也会更大，模型权重参数容易出现震荡乃至发散。",
                     "higher-degree features weigh more; the weights oscillate or even diverge", _unscaled),
        ),
    ),
    Section(
        "weight-decay",
        "Weight decay",
        "d2l 4.5",
        (("l1-update", P.l1_update), ("weight-decay", P.experiment("weight-decay"))),
        (
            Question("d2l 4.5, exercise 3", "使用L1正则化后更新方程是什么样的?", "What is the update equation with L1 regularization?",
                     "w ← w − ηλ − (η/|B|) Σ x⁽ⁱ⁾ (wᵀx⁽ⁱ⁾ + b − y⁽ⁱ⁾)", "w <- w - eta*lambda - eta * (data gradient)", _l1),
        ),
    ),
    Section(
        "dropout",
        "Dropout: the p1 x p2 grid, dropout with weight decay, the collapse",
        "d2l 4.6",
        (("dropout", P.experiment("dropout")),),
        (
            Question("d2l 4.6, exercise 1", "如果更改第一层和第二层的暂退法概率，会发生什么情况？具体地说，如果交换这两个层，会发生什么情况？",
                     "What if the dropout rates of the first and second layers change, and in particular are swapped?",
                     "浅层对于dropout更加脆弱，当浅层dropout量较大时准确率才会显著下降，而深层dropout似乎对于结果的调节更加细微。",
                     "the shallow layer is more fragile: only a large first-layer rate hurts much; the deeper one matters less",
                     _swap),
            Question("d2l 4.6, exercise 4 (the log's lost grid)", "在Q1代码基础上添加了3的权重衰减。……accuracy: 0.10",
                     "With weight decay 3 added (lr 0.5), every cell of the grid ended at 0.10.",
                     "由于我这里设置学习率为0.5，正则化系数为3，导致每次计算权重都会倒转。",
                     "with lr 0.5 and weight decay 3, every step flips the weights", _collapse),
            Question("d2l 4.6, exercise 4", "如果同时使用暂退法和权重衰减，会发生什么情况？结果是累加的吗？",
                     "Dropout and weight decay together: do the gains add up?",
                     "通常来说我们认为权重衰减和暂退法的收益是可以叠加的……然而，收益无法无限叠加。",
                     "the gains usually add up, though not without limit", _additive),
        ),
    ),
    Section(
        "backprop",
        "Forward and backward propagation",
        "d2l 4.7",
        (("backprop", P.backprop_checks),),
        (
            Question("d2l 4.7, exercise 1", "假设一些标量函数f的输入X是n × m矩阵。f相对于X的梯度维数是多少？",
                     "For a scalar function f of an n x m matrix X, what is the dimension of the gradient by X?",
                     "2维。", "two-dimensional", _shape),
            Question("d2l 4.7 (quoted by the log)", "训练比预测需要更多的内存。", "Training needs more memory than prediction.",
                     "（引用）", "quoted from the book", _memory),
        ),
    ),
    Section(
        "stability",
        "Numerical stability and initialization",
        "d2l 4.8",
        (("stability", P.experiment("stability")),),
        (
            Question("d2l 4.8 (the log's notes)", "梯度消失", "Vanishing gradients",
                     "当输入值很大或者很小的时候，sigmoid梯度都会消失。",
                     "the sigmoid's gradient vanishes for large or small inputs", _sigmoid),
            Question("d2l 4.8 (the log's notes)", "对称性", "Symmetry",
                     "假如我们一开始初始化的时候让所有神经元的权重一致，那么……所有神经元的行为都会完全一致。",
                     "with equal initial weights, all hidden units behave identically", _symmetry),
        ),
    ),
    Section(
        "shift",
        "Environment and distribution shift",
        "d2l 4.9",
        (("shift", P.shift),),
        intro="The log has no exercise here; the study measures what the section describes: each kind of shift "
        "generated on Fashion-MNIST, detected and corrected, over seeds.",
    ),
    Section(
        "house",
        "Kaggle House Prices",
        "d2l 4.10",
        (("house", P.house),),
        (
            Question("d2l 4.10", "Kaggle房价预测实战", "Predicting House Prices on Kaggle",
                     "这节我决定先自己折腾个模型再看d2l讲义。", "I will build my own model before reading the book's",
                     _house),
        ),
    ),
    Section(
        "best-mlp",
        "The best plain MLP on Fashion-MNIST",
        "d2l 4.2-4.6",
        (("best-mlp", P.experiment("best-mlp")),),
        (
            Question("the log's best", "经过了30次迭代后命中率达到了88%", "88% after 30 epochs (three hidden layers, one seed)",
                     "88%", "0.88", _best),
        ),
    ),
)  # fmt: skip


def section_keys() -> list[str]:
    return [s.key for s in SECTIONS]

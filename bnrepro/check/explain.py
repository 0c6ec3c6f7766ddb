"""``bnrepro explain``: one step's batch-norm arithmetic written out with the trace's numbers.

The lines follow the hand calculation in the answer to post 001: the batch mean and variance from
the layer's inputs, then ``new = momentum * old + (1 - momentum) * batch`` for both moving
statistics, then the inference formula for one element. Each line ends with what TensorFlow stored
and the difference.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas
from bnrepro.errors import UserError

SHOWN_VALUES = 4  # inputs listed in full up to this many; longer lists are elided


def _number(value):
    return f"{float(value):.8g}"


def _listing(values):
    values = [_number(v) for v in values]
    if len(values) > SHOWN_VALUES:
        values = values[:SHOWN_VALUES - 1] + ["...", values[-1]]
    return ", ".join(values)


def _result_line(left, value, stored):
    difference = float(value) - float(stored)
    return (f"{left} = {_number(value)}    TensorFlow: {_number(stored)}"
            f"    difference {difference:.2g}")


def explain_step(trace, step, layer=None, channel=0):
    """The hand calculation of ``step`` for ``layer`` (default: the first layer, else the first
    average of a ``bnrepro-trace/2`` trace) and one channel."""
    record = trace.step(step)
    if record is None or step < 1:
        traced = [r["step"] for r in trace.steps if r["step"] >= 1]
        raise UserError(f"step {step} is not a training step of {trace.path} "
                        f"(traced steps: {_span(traced)})")
    names = list(trace.layers) + list(trace.averages)
    if not names:
        raise UserError(f"{trace.path} has no batch-norm layer or moving average")
    layer = layer or names[0]
    if layer not in names:
        raise UserError(f"no batch-norm layer or average {layer!r} in {trace.path}; there are: "
                        f"{', '.join(names)}")
    section = "bn" if layer in trace.layers else "averages"
    previous = trace.before(record, layer, section)
    if previous is None or layer not in record.get(section, {}):
        raise UserError(f"step {step} of {trace.path} does not hold {layer!r} and the state "
                        "before it")
    settings = trace.layers.get(layer) or trace.averages[layer]
    state, old = record[section][layer], previous[section][layer]
    momentum = float(state.get("momentum", settings["momentum"]))
    first = state["moving_mean"] if section == "bn" else state["value"]
    if not 0 <= channel < np.size(first):
        raise UserError(f"--channel {channel} is outside 0..{np.size(first) - 1}")

    def at(array):
        return float(np.asarray(array)[..., channel]) if np.ndim(array) else float(array)

    if section == "averages":
        return "\n".join(_average_lines(trace, step, layer, settings, state, old, momentum, at))
    epsilon = settings["epsilon"]
    epsilon_text = "unknown" if epsilon is None else f"{epsilon:g}"
    lines = [f"Step {step} of {trace.header.get('scenario', '?')}, layer {layer} "
             f"(momentum {momentum:g}, epsilon {epsilon_text}), channel {channel}"]
    if "batch_input" in state and "batch_mean" in state:
        inputs = np.asarray(state["batch_input"])[..., channel].ravel()
        count = inputs.size
        mean = formulas.batch_mean(inputs[:, None])[0]
        variances = {convention: formulas.batch_variance(inputs[:, None], convention)[0]
                     for convention in formulas.VARIANCE_CONVENTIONS if count > 1}
        convention = min(variances, key=lambda c: abs(variances[c] - at(state["batch_variance"])))
        divisor = count - 1 if convention == formulas.UNBIASED else count
        lines.append(f"layer inputs in the step's training run (N = {count}): [{_listing(inputs)}]")
        lines.append(_result_line(f"batch_mean = ({' + '.join(_number(v) for v in inputs[:SHOWN_VALUES])}"
                                  f"{' + ...' if count > SHOWN_VALUES else ''}) / {count}",
                                  mean, at(state["batch_mean"])))
        lines.append(_result_line(f"batch_variance = sum((x - {_number(mean)})^2) / {divisor}",
                                  variances[convention], at(state["batch_variance"])))
    elif "batch_mean" in state:
        lines.append("layer inputs were not recorded; the batch statistics below are TensorFlow's")
    else:
        lines.append("the step's run did not run the update: nothing was averaged in")
        return "\n".join(lines)
    for statistic, batch_statistic in (("moving_mean", "batch_mean"),
                                       ("moving_variance", "batch_variance")):
        lines += _update_lines(statistic, batch_statistic, at(old[statistic]),
                               at(state[batch_statistic]), at(state[statistic]), momentum,
                               _local_steps(settings, old, state))
    if layer in record.get("inference", {}):
        pair = record["inference"][layer]
        x = float(np.asarray(pair["input"])[..., channel].ravel()[0])
        stored = float(np.asarray(pair["output"])[..., channel].ravel()[0])
        gamma, beta = at(old["gamma"]), at(old["beta"])
        moving_mean, moving_variance = at(old["moving_mean"]), at(old["moving_variance"])
        value = formulas.normalize(x, moving_mean, moving_variance, gamma, beta, epsilon)
        lines.append("inference output of element 0, with the variables before the step:")
        lines.append("bn = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta")
        lines.append(_result_line(
            f"   = {_number(gamma)} * ({_number(x)} - {_number(moving_mean)}) / "
            f"sqrt({_number(moving_variance)} + {epsilon:g}) + {_number(beta)}", value, stored))
    return "\n".join(lines)


def _local_steps(settings, old, state):
    """``(t - 1, t)`` of a zero-debiased average, else ``None``."""
    if not settings.get("zero_debias") or "local_step" not in state or "local_step" not in old:
        return None
    return float(np.ravel(old["local_step"])[0]), float(np.ravel(state["local_step"])[0])


def _update_lines(statistic, consumed_name, old_value, consumed, stored, momentum, local_steps):
    """``new = momentum * old + (1 - momentum) * consumed``, or its zero-debiased form."""
    if local_steps is None:
        new_value = formulas.moving_average(old_value, consumed, momentum)
        return [f"{statistic} = momentum * old + (1 - momentum) * {consumed_name}",
                _result_line(f"    = {momentum:g} * {_number(old_value)} + (1 - {momentum:g}) * "
                             f"{_number(consumed)}", new_value, stored)]
    before, after = local_steps
    _, biased, new_value = formulas.zero_debiased_average(old_value, consumed, momentum, before,
                                                          after)
    return [f"{statistic} (zero-debiased, t = {after:g}) = (momentum * old * (1 - momentum^(t-1)) "
            f"+ (1 - momentum) * {consumed_name}) / (1 - momentum^t)",
            _result_line(f"    = ({momentum:g} * {_number(old_value)} * (1 - {momentum:g}^{before:g})"
                         f" + (1 - {momentum:g}) * {_number(consumed)}) / (1 - {momentum:g}^"
                         f"{after:g})", new_value, stored)]


def _average_lines(trace, step, name, settings, state, old, momentum, at):
    """An average that pairs with no other: ``value = momentum * old + (1 - momentum) * consumed``."""
    lines = [f"Step {step} of {trace.header.get('scenario', '?')}, average {name} "
             f"(momentum {momentum:g}) of {settings.get('consumed', 'a tensor')}"]
    if "consumed" not in state:
        return lines + ["the step's run did not run the update: nothing was averaged in"]
    return lines + _update_lines("value", "consumed", at(old["value"]), at(state["consumed"]),
                                 at(state["value"]), momentum, _local_steps(settings, old, state))


def _span(steps):
    return f"{steps[0]}..{steps[-1]}" if steps else "none"

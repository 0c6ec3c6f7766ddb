"""``bnrepro explain``: one step's batch-norm arithmetic written out with the trace's numbers.

The lines follow the hand calculation in the answer to post 001: the batch mean and variance from
the layer's inputs, then ``new = momentum * old + (1 - momentum) * batch`` for both moving
statistics, then the inference formula for one element. Each line ends with what TensorFlow stored
and the difference.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas, records
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
    first = state["moving_mean"] if section == "bn" else state["value"]
    if not 0 <= channel < np.size(first):
        raise UserError(f"--channel {channel} is outside 0..{np.size(first) - 1}")

    def at(array):
        return float(np.asarray(array)[..., channel]) if np.ndim(array) else float(array)

    if section == "averages":
        return "\n".join(_average_lines(trace, step, layer, settings, state, old,
                                        records.momentum_of(settings, state, "value"), at))
    epsilon = settings["epsilon"]
    epsilon_text = "unknown" if epsilon is None else f"{epsilon:g}"
    links = records.updates(state, old)
    momenta = [{statistic: records.momentum_of(settings, state, statistic, link)
                for statistic in ("moving_mean", "moving_variance")} for link in links or [None]]
    lines = [f"Step {step} of {trace.header.get('scenario', '?')}, layer {layer} "
             f"({_momentum_text(momenta[-1])}, epsilon {epsilon_text}), channel {channel}"]
    if not links:
        lines.append("the step's run did not run the update: nothing was averaged in")
        return "\n".join(lines)
    if len(links) > 1 and records.ordered(state):
        lines.append(f"the run updated the layer {len(links)} times; each update in the order it "
                     "ran, from the state before the run:")
    elif len(links) > 1:
        lines.append(f"the run updated the layer {len(links)} times in no order it fixes; each "
                     "update in the order listed, from the state before the run (TensorFlow may "
                     "have run them otherwise: bnrepro verify tries every order):")
    values = {statistic: at(old[statistic]) for statistic in ("moving_mean", "moving_variance")}
    for number, (link, momentum) in enumerate(zip(links, momenta), start=1):
        if len(links) > 1:
            lines.append(f"update {number} of {len(links)}:")
        batch_lines, consumed = _batch_lines(link, channel, at, settings.get("fused"))
        lines += batch_lines
        for statistic, batch_statistic in (("moving_mean", "batch_mean"),
                                           ("moving_variance", "batch_variance")):
            stored = at(state[statistic]) if number == len(links) else None
            update, values[statistic] = _update_lines(
                statistic, batch_statistic, values[statistic], consumed[batch_statistic], stored,
                momentum[statistic], _local_steps(settings, old, state))
            lines += update
    if layer in record.get("inference", {}):
        pair = record["inference"][layer]
        x = float(np.asarray(pair["input"])[..., channel].ravel()[0])
        stored = float(np.asarray(pair["output"])[..., channel].ravel()[0])
        gamma, beta = at(old["gamma"]), at(old["beta"])
        moving_mean, moving_variance = at(old["moving_mean"]), at(old["moving_variance"])
        lines.append("inference output of element 0, with the variables before the step:")
        lines.append("bn = gamma * (x - moving_mean) / sqrt(moving_variance + epsilon) + beta")
        if epsilon is None:
            lines.append(f"   not computed: epsilon is unknown (TensorFlow: {_number(stored)})")
            return "\n".join(lines)
        value = formulas.normalize(x, moving_mean, moving_variance, gamma, beta, epsilon)
        lines.append(_result_line(
            f"   = {_number(gamma)} * ({_number(x)} - {_number(moving_mean)}) / "
            f"sqrt({_number(moving_variance)} + {epsilon:g}) + {_number(beta)}", value, stored))
    return "\n".join(lines)


def _momentum_text(momenta):
    """``momentum 0.9``, or each average's when they differ; ``unknown`` when not recorded."""
    def text(value):
        return "unknown" if value is None else f"{value:g}"
    mean, variance = momenta["moving_mean"], momenta["moving_variance"]
    if mean == variance:
        return f"momentum {text(mean)}"
    return f"momentum {text(mean)} for the mean, {text(variance)} for the variance"


def _batch_lines(update, channel, at, fused):
    """``(lines, consumed)``: the batch mean and variance of one update from the layer's inputs,
    when recorded, against what the update consumed; ``consumed`` the channel's ``batch_mean``
    and ``batch_variance`` the update lines use: as recorded, or, when the trace has only the
    input (the consumed values not fetched), its mean and variance (``/(N-1)`` for a layer the
    header declares fused, else ``/N``)."""
    if "batch_input" not in update:
        return (["layer inputs were not recorded; the batch statistics below are TensorFlow's"],
                {name: at(update[name]) for name in ("batch_mean", "batch_variance")})
    inputs = np.asarray(update["batch_input"])[..., channel].ravel()
    count = inputs.size
    mean = formulas.batch_mean(inputs[:, None])[0]
    variances = {convention: formulas.batch_variance(inputs[:, None], convention)[0]
                 for convention in formulas.VARIANCE_CONVENTIONS if count > 1}
    lines = [f"layer inputs in the step's training run (N = {count}): [{_listing(inputs)}]"]
    mean_text = (f"batch_mean = ({' + '.join(_number(v) for v in inputs[:SHOWN_VALUES])}"
                 f"{' + ...' if count > SHOWN_VALUES else ''}) / {count}")
    if "batch_mean" not in update:  # the update's own values were not fetched
        convention = formulas.UNBIASED if fused and count > 1 else formulas.BIASED
        divisor = count - 1 if convention == formulas.UNBIASED else count
        lines += [f"{mean_text} = {_number(mean)}    (TensorFlow's not recorded)",
                  f"batch_variance = sum((x - {_number(mean)})^2) / {divisor} = "
                  f"{_number(variances[convention])}    (TensorFlow's not recorded)"]
        return lines, {"batch_mean": mean, "batch_variance": variances[convention]}
    convention = min(variances, key=lambda c: abs(variances[c] - at(update["batch_variance"])))
    divisor = count - 1 if convention == formulas.UNBIASED else count
    lines += [_result_line(mean_text, mean, at(update["batch_mean"])),
              _result_line(f"batch_variance = sum((x - {_number(mean)})^2) / {divisor}",
                           variances[convention], at(update["batch_variance"]))]
    return lines, {name: at(update[name]) for name in ("batch_mean", "batch_variance")}


def _local_steps(settings, old, state):
    """``(t - 1, t)`` of a zero-debiased average, else ``None``."""
    if not settings.get("zero_debias") or "local_step" not in state or "local_step" not in old:
        return None
    return float(np.ravel(old["local_step"])[0]), float(np.ravel(state["local_step"])[0])


def _update_lines(statistic, consumed_name, old_value, consumed, stored, momentum, local_steps):
    """``(lines, new value)`` of ``new = momentum * old + (1 - momentum) * consumed``, or its
    zero-debiased form; ``stored``: TensorFlow's value (``None``: not recorded, an update followed
    by another in the same run); ``momentum`` ``None``: unknown, nothing computed."""
    if momentum is None:
        return [f"{statistic}: not computed, the momentum was computed at run time and not "
                "recorded"], float("nan")
    if local_steps is None:
        new_value = formulas.moving_average(old_value, consumed, momentum)
        left = f"    = {momentum:g} * {_number(old_value)} + (1 - {momentum:g}) * {_number(consumed)}"
        lines = [f"{statistic} = momentum * old + (1 - momentum) * {consumed_name}"]
    else:
        before, after = local_steps
        _, biased, new_value = formulas.zero_debiased_average(old_value, consumed, momentum,
                                                              before, after)
        left = (f"    = ({momentum:g} * {_number(old_value)} * (1 - {momentum:g}^{before:g})"
                f" + (1 - {momentum:g}) * {_number(consumed)}) / (1 - {momentum:g}^{after:g})")
        lines = [f"{statistic} (zero-debiased, t = {after:g}) = (momentum * old * (1 - "
                 f"momentum^(t-1)) + (1 - momentum) * {consumed_name}) / (1 - momentum^t)"]
    if stored is None:
        lines.append(f"{left} = {_number(new_value)}    (TensorFlow's not recorded: the next "
                     "update starts from it)")
    else:
        lines.append(_result_line(left, new_value, stored))
    return lines, float(new_value)


def _average_lines(trace, step, name, settings, state, old, momentum, at):
    """An average that pairs with no other: ``value = momentum * old + (1 - momentum) * consumed``."""
    momentum_text = "unknown" if momentum is None else f"{momentum:g}"
    lines = [f"Step {step} of {trace.header.get('scenario', '?')}, average {name} "
             f"(momentum {momentum_text}) of {settings.get('consumed', 'a tensor')}"]
    if "consumed" not in state:
        return lines + ["the step's run did not run the update: nothing was averaged in"]
    return lines + _update_lines("value", "consumed", at(old["value"]), at(state["consumed"]),
                                 at(state["value"]), momentum,
                                 _local_steps(settings, old, state))[0]


def _span(steps):
    return f"{steps[0]}..{steps[-1]}" if steps else "none"

"""``bnrepro explain``: one step's batch-norm arithmetic written out with the trace's numbers.

The lines follow the hand calculation in the answer to post 001: the batch mean and variance from
the layer's inputs, then ``new = momentum * old + (1 - momentum) * batch`` for both moving
statistics, then the inference formula for one element. Each line ends with what TensorFlow stored
and the difference.

A layer whose header declares another mode (:class:`bnrepro.check.layer_modes.LayerMode`; the fused
kernel, zero-debiased averages) is named on the second line and computed under it, so that the
differences are float32 rounding's: ghost batches of ``k`` samples (``virtual_batch_size``) give
``batch_mean = (1/G) sum_j mean(x_j)`` and ``batch_variance = (1/G) sum_j var(x_j)`` over the
``G = N / k`` ghost batches ``x_j``, each listed; renorm averages the standard deviation,
``moving_stddev = momentum * moving_stddev_old + (1 - momentum) * sqrt(batch_variance + epsilon)``,
and sets ``moving_variance = max(moving_stddev^2 - epsilon, 0)``.
"""
from __future__ import annotations

import numpy as np

from bnrepro.check import formulas, layer_modes, records
from bnrepro.check.layer_modes import LayerMode
from bnrepro.errors import UserError
from bnrepro.check.chain import Chain

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
    average of a ``bnrepro-trace/2`` trace) and one channel. The trace is read up to the step, a
    block at a time (a trace from :func:`bnrepro.trace.open_trace` is not held in memory)."""
    names = list(trace.layers) + list(trace.averages)
    layer = layer or (names[0] if names else None)
    section = "bn" if layer in trace.layers else "averages"
    record, previous, traced = _step_and_before(trace, step, layer, section)
    if record is None or step < 1:
        raise UserError(f"step {step} is not a training step of {trace.path} "
                        f"(traced steps: {_span(traced)})")
    if not names:
        raise UserError(f"{trace.path} has no batch-norm layer or moving average")
    if layer not in names:
        raise UserError(f"no batch-norm layer or average {layer!r} in {trace.path}; there are: "
                        f"{', '.join(names)}")
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
    mode = LayerMode.from_header(settings, layer)
    if _mode_text(settings, mode):
        lines.append(f"mode (from the header): {_mode_text(settings, mode)}")
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
    if mode.renorm and epsilon is not None:
        values["moving_stddev"] = at(layer_modes.moving_stddev_after(previous, layer, epsilon))
    for number, (link, momentum) in enumerate(zip(links, momenta), start=1):
        if len(links) > 1:
            lines.append(f"update {number} of {len(links)}:")
        batch_lines, consumed = _batch_lines(link, channel, at, mode, settings.get("fused"))
        lines += batch_lines
        last = number == len(links)
        for statistic, batch_statistic in (("moving_mean", "batch_mean"),
                                           ("moving_variance", "batch_variance")):
            stored = at(state[statistic]) if last else None
            if statistic == "moving_variance" and mode.renorm:
                recorded = layer_modes.renorm_variable(record, layer, "moving_stddev")
                update, values["moving_stddev"], values[statistic] = _renorm_lines(
                    values.get("moving_stddev"), consumed[batch_statistic], momentum[statistic],
                    epsilon, None if recorded is None or not last else at(recorded), stored)
            else:
                update, values[statistic] = _update_lines(
                    statistic, batch_statistic, values[statistic], consumed[batch_statistic],
                    stored, momentum[statistic], _local_steps(settings, old, state))
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


def _mode_text(settings, mode):
    """The header's declared computation beyond the standard layer, in words ("": none): the
    layer's :class:`LayerMode` (:meth:`LayerMode.describe`), the fused kernel, zero-debiasing."""
    parts = [] if mode.standard else [mode.describe()]
    if settings.get("fused"):
        parts.append("the fused kernel (its update averages the unbiased /(N-1) batch variance)")
    if settings.get("zero_debias"):
        parts.append("zero-debiased moving averages")
    return "; ".join(parts)


def _batch_lines(update, channel, at, mode, fused):
    """``(lines, consumed)``: the batch mean and variance of one update from the layer's inputs,
    when recorded, computed under the layer's ``mode`` (:meth:`LayerMode.moments`: with ghost
    batches the mean of theirs, each listed) against what the update consumed; the variance
    ``/N`` or ``/(N-1)``, whichever is nearer TensorFlow's. ``consumed`` the channel's
    ``batch_mean`` and ``batch_variance`` the update lines use: as recorded, or, when the trace
    has only the input (the consumed values not fetched), its mean and variance (``/(N-1)`` for a
    layer the header declares fused, else ``/N``)."""
    recorded = {name: at(update[name]) for name in ("batch_mean", "batch_variance")
                if name in update}
    if "batch_input" not in update:
        return (["layer inputs were not recorded; the batch statistics below are TensorFlow's"],
                recorded)
    x = np.asarray(update["batch_input"], dtype=np.float64)[..., channel:channel + 1]
    inputs = x.ravel()
    count = inputs.size
    lines = [f"layer inputs in the step's training run (N = {count}): [{_listing(inputs)}]"]
    try:
        moments = {convention: mode.moments(x, convention)
                   for convention in formulas.VARIANCE_CONVENTIONS}
    except ValueError as error:  # the declared ghost batches do not split the batch
        if len(recorded) < 2:
            raise UserError(f"{mode.describe()}: {error}, and TensorFlow's batch statistics were "
                            "not recorded") from None
        return lines + [f"{mode.describe()}: {error}; the batch statistics below are "
                        "TensorFlow's"], recorded
    mean = moments[formulas.BIASED][0][0]
    variances = {convention: pair[1][0] for convention, pair in moments.items()
                 if pair is not None}  # None: one value per (ghost) batch, no unbiased variance
    if "batch_mean" in update:
        convention = min(variances, key=lambda c: abs(variances[c] - recorded["batch_variance"]))
    else:
        convention = formulas.UNBIASED if fused and formulas.UNBIASED in variances \
            else formulas.BIASED
    if mode.ghost:
        ghost_lines, mean_text, variance_text = _ghost_batch_lines(x, mode, convention)
        lines += ghost_lines
    else:
        divisor = count - 1 if convention == formulas.UNBIASED else count
        mean_text = (f"batch_mean = ({' + '.join(_number(v) for v in inputs[:SHOWN_VALUES])}"
                     f"{' + ...' if count > SHOWN_VALUES else ''}) / {count}")
        variance_text = f"batch_variance = sum((x - {_number(mean)})^2) / {divisor}"
    if "batch_mean" not in update:  # the update's own values were not fetched
        lines += [f"{mean_text} = {_number(mean)}    (TensorFlow's not recorded)",
                  f"{variance_text} = {_number(variances[convention])}    (TensorFlow's not "
                  "recorded)"]
        return lines, {"batch_mean": mean, "batch_variance": variances[convention]}
    lines += [_result_line(mean_text, mean, recorded["batch_mean"]),
              _result_line(variance_text, variances[convention], recorded["batch_variance"])]
    return lines, recorded


def _ghost_batch_lines(x, mode, convention):
    """``(lines, mean_text, variance_text)`` of one channel's input ``x`` (``(N, ..., 1)``) split
    into the ``G = N / k`` ghost batches ``x_j`` of ``mode`` (:func:`layer_modes.ghost_rows`):
    a line per ghost batch (the first few) with its samples, ``mean(x_j)`` and ``var(x_j)``, and
    the left-hand sides of ``batch_mean = (1/G) sum_j mean(x_j)`` and ``batch_variance = (1/G)
    sum_j var(x_j)``."""
    rows = layer_modes.ghost_rows(x.shape[0], mode.virtual_batch_size, mode.ghost_layout)
    means, variances = layer_modes.each_ghost_batch_moments(
        x, mode.virtual_batch_size, mode.ghost_layout, convention)
    means, variances = [m[0] for m in means], [v[0] for v in variances]
    values = formulas.values_per_channel(x[rows[0]])
    divisor = values - 1 if convention == formulas.UNBIASED else values
    lines = [f"{len(rows)} ghost batches of {mode.virtual_batch_size} {mode.ghost_layout} samples, "
             f"each normalised with its own moments:"]
    for number, (index, mean, variance) in enumerate(zip(rows, means, variances), start=1):
        if number == SHOWN_VALUES and len(rows) > SHOWN_VALUES:
            lines.append(f"  ... ({len(rows) - SHOWN_VALUES} more)")
            break
        lines.append(f"  ghost batch {number}, samples {_listing(index)}: "
                     f"[{_listing(x[index].ravel())}]: mean {_number(mean)}, variance "
                     f"sum((x_j - {_number(mean)})^2) / {divisor} = {_number(variance)}")

    def averaged(name, parts):
        shown = " + ".join(_number(v) for v in parts[:SHOWN_VALUES])
        return f"{name} = ({shown}{' + ...' if len(parts) > SHOWN_VALUES else ''}) / {len(parts)}"
    return lines, averaged("batch_mean", means), averaged("batch_variance", variances)


def _renorm_lines(old_stddev, consumed, momentum, epsilon, stored_stddev, stored):
    """``(lines, moving_stddev, moving_variance)`` of batch renorm's moving variance
    (:func:`layer_modes.renorm_moving_variance`)::

        moving_stddev   = momentum * moving_stddev_old
                          + (1 - momentum) * sqrt(batch_variance + epsilon)
        moving_variance = max(moving_stddev^2 - epsilon, 0)

    ``stored_stddev``, ``stored``: TensorFlow's values (``None``: not recorded); nothing computed
    (NaN) when the momentum or epsilon is unknown."""
    if momentum is None or epsilon is None:
        unknown = "momentum was computed at run time and not recorded" if momentum is None \
            else "epsilon is unknown"
        return [f"moving_variance (renorm): not computed, the {unknown}"], np.nan, np.nan
    stddev, variance = layer_modes.renorm_moving_variance(old_stddev, consumed, momentum, epsilon)
    left = (f"    = {momentum:g} * {_number(old_stddev)} + (1 - {momentum:g}) * "
            f"sqrt({_number(consumed)} + {epsilon:g})")
    lines = ["moving_stddev = momentum * moving_stddev_old + (1 - momentum) * sqrt(batch_variance "
             "+ epsilon)   (renorm averages the standard deviation)",
             f"{left} = {_number(stddev)}    (TensorFlow's not recorded)" if stored_stddev is None
             else _result_line(left, stddev, stored_stddev),
             "moving_variance = max(moving_stddev^2 - epsilon, 0)"]
    left = f"    = max({_number(stddev)}^2 - {epsilon:g}, 0)"
    lines.append(f"{left} = {_number(variance)}    (TensorFlow's not recorded: the next update "
                 "starts from it)" if stored is None else _result_line(left, variance, stored))
    return lines, float(stddev), float(variance)


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


def _step_and_before(trace, step, name, section):
    """``(record of step, record of name's state before it, traced steps)``: the first record
    numbered ``step`` (``None`` if there is none) and the one a :class:`~bnrepro.trace.Chain`
    names before it (``None`` if not kept), read until it is found; ``traced steps``, the first
    and last step numbers from 1 read so far (all of them when the step is not found)."""
    chain, first, last = Chain(trace.steps_are_runs), None, None
    for block in trace.blocks():
        for record in block:
            if record["step"] >= 1:
                first, last = record["step"] if first is None else first, record["step"]
            if record["step"] == step:
                return record, chain.before(record, name, section), [first, last]
            chain.advance(record)
    return None, None, [] if first is None else [first, last]


def _span(steps):
    return f"{steps[0]}..{steps[-1]}" if steps else "none"

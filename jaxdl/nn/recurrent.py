"""Recurrent layers (docs/design.md, decision 3): a cell plus one `lax.scan` driver.

Cells compute the equations of Keras 3 (`keras.layers.SimpleRNNCell`, `LSTMCell`, `GRUCell`) with
Keras's parameter names, shapes and gate order, so Keras weights copy in unchanged:

- `SimpleRNNCell`: h_t = act(x_t K + h_{t-1} R + b). kernel K [d, u], recurrent_kernel R [u, u],
  bias b [u]; u*d + u*u + u parameters.
- `LSTMCell` (Hochreiter & Schmidhuber, 1997, with the forget gate of Gers et al., 2000):
  [i, f, g, o] = x_t K + h_{t-1} R + b split in four (gate order i, f, c, o);
  c_t = rec(f) * c_{t-1} + rec(i) * act(g), h_t = rec(o) * act(c_t). K [d, 4u], R [u, 4u],
  b [4u] (forget part initialised to 1: `unit_forget_bias`, Jozefowicz et al., 2015);
  4 (u*d + u*u + u) parameters. State (h, c), in Keras's order.
- `GRUCell` (Cho et al., 2014), gate order z, r, h. `reset_after=True` (Keras's default, the
  cuDNN variant): bias [2, 3u] (input bias, recurrent bias) and
  h~ = act(x K_h + b_h + r * (h_{t-1} R_h + b'_h)); `reset_after=False` (the paper):
  bias [3u] and h~ = act(x K_h + b_h + (r * h_{t-1}) R_h). h_t = z * h_{t-1} + (1 - z) * h~.
  3 (u*d + u*u + 2u) or 3 (u*d + u*u + u) parameters. Not nnx.GRUCell: it lacks one bias
  (flax issue 5594), so Keras GRUs cannot be copied into it.

`RNN(cell)` runs a cell over [B, T, d]: the input projection x K + b is hoisted out of the
recurrence, one matmul per chunk of up to 16 time steps (only h R stays in the per-step scan), the
gate matmuls are fused into one kernel, and `jax.lax.scan` carries the state. The LSTM's default
activations have a hand-written backward pass that keeps half the memory of autodiff's.
Options as in `keras.layers.RNN`: return_sequences,
return_state, go_backwards, an initial state, a [B, T] mask for padded steps (at a masked step the
state is carried unchanged and the output repeats the previous one, or is zero with
`zero_output_for_mask`), `unroll`. Dropout (inputs) and recurrent dropout (h_{t-1}) use one mask
per sequence for all steps, as Keras does (Gal & Ghahramani, 2016).

`SimpleRNN`, `LSTM`, `GRU` are `RNN`s built with their cell; `Bidirectional` runs a forward and a
backward layer and merges them (concat / sum / mul / ave); `RecurrentStack` stacks layers (each
optionally bidirectional); `TimeDistributed` applies a module at every step; `Embedding` maps
token ids to vectors (Keras's `embeddings` parameter, optional `mask_zero`).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.errors import JaxdlError, check_positive, unknown_name
from jaxdl.nn.activations import get_activation
from jaxdl.nn.init import get_initializer

State = tuple[jax.Array, ...]


def _dropout_mask(rngs: nnx.Rngs | None, rate: float, shape, dtype, what: str) -> jax.Array:
    """Inverted-dropout multipliers (0 or 1 / (1 - rate)) for one sequence, reused at every step."""
    if rngs is None:
        raise JaxdlError(
            f"{what} > 0 in training needs random streams: call with rngs=nnx.Rngs(...)"
        )
    keep = jax.random.bernoulli(rngs.dropout(), 1.0 - rate, shape)
    return keep.astype(dtype) / (1.0 - rate)


def _bias_init(name, rngs: nnx.Rngs):
    """shape -> initial bias. The default 'zeros' draws no random key, so adding the option
    leaves every other parameter's initial values as they were."""
    if name == "zeros":
        return lambda shape: jnp.zeros(shape, jnp.float32)
    init = get_initializer(name)
    return lambda shape: init(rngs.params(), shape, jnp.float32)


class RecurrentCell(nnx.Module):
    """Shared parts of the cells: fused kernels [d, G u] and [u, G u], activations, dropout rates.

    Subclasses set `gates` (G) and `state_names`, and define `step`."""

    gates: int = 1
    state_names: tuple[str, ...] = ("h",)

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        use_bias: bool = True,
        kernel_init: str = "glorot_uniform",
        recurrent_init: str = "orthogonal",
        bias_init: str = "zeros",
        bias_shape: tuple[int, ...] | None = None,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        rngs: nnx.Rngs,
    ):
        name = type(self).__name__
        check_positive(f"{name} in_features", in_features, integer=True)
        check_positive(f"{name} units", units, integer=True)
        for what, rate in (("dropout", dropout), ("recurrent_dropout", recurrent_dropout)):
            if not 0.0 <= rate < 1.0:
                raise JaxdlError(f"{name}: {what} must be in [0, 1), got {rate}")
        for act in (activation, recurrent_activation):
            get_activation(act)  # an unknown name fails here, not at the first call
        self.in_features, self.units = in_features, units
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.dropout, self.recurrent_dropout = dropout, recurrent_dropout
        gu = self.gates * units
        self.kernel = nnx.Param(
            get_initializer(kernel_init)(rngs.params(), (in_features, gu), jnp.float32)
        )
        self.recurrent_kernel = nnx.Param(
            get_initializer(recurrent_init)(rngs.params(), (units, gu), jnp.float32)
        )
        self.bias = (
            nnx.Param(self.initial_bias(_bias_init(bias_init, rngs), bias_shape or (gu,)))
            if use_bias
            else None
        )

    def initial_bias(self, init, shape) -> jax.Array:
        """The bias from `init(shape)` (Keras's bias_initializer; zeros by default)."""
        return init(shape)

    @property
    def num_states(self) -> int:
        return len(self.state_names)

    def zero_state(self, batch: int, dtype=jnp.float32) -> State:
        return tuple(jnp.zeros((batch, self.units), dtype) for _ in self.state_names)

    def input_bias(self) -> jax.Array | float:
        return 0.0 if self.bias is None else self.bias[...]

    def project(self, x: jax.Array) -> jax.Array:
        """x [..., d] -> x K + b [..., G u]: the part of every gate that does not depend on h."""
        return x @ self.kernel[...] + self.input_bias()

    def step(
        self, xp: jax.Array, state: State, h_drop: jax.Array | None
    ) -> tuple[jax.Array, State]:
        """One time step: xp [B, G u] (projected input), state -> (output [B, u], new state).

        h_drop [B, u] are the recurrent-dropout multipliers of h_{t-1} (None: no dropout)."""
        raise NotImplementedError  # abstract: each cell defines its recurrence

    def _act(self):
        return get_activation(self.activation), get_activation(self.recurrent_activation)


class SimpleRNNCell(RecurrentCell):
    """h_t = act(x_t K + h_{t-1} R + b) (Elman, 1990); Keras's SimpleRNNCell."""

    gates = 1
    state_names = ("h",)

    def step(self, xp, state, h_drop):
        (h,) = state
        hr = h if h_drop is None else h * h_drop
        act, _ = self._act()
        h = act(xp + hr @ self.recurrent_kernel[...])
        return h, (h,)


class LSTMCell(RecurrentCell):
    """LSTM with gate order i, f, c, o and state (h, c); Keras's LSTMCell (implementation 2)."""

    gates = 4
    state_names = ("h", "c")

    def __init__(self, in_features: int, units: int, *, unit_forget_bias: bool = True, **kw):
        self.unit_forget_bias = unit_forget_bias
        super().__init__(in_features, units, **kw)

    def initial_bias(self, init, shape):
        if not self.unit_forget_bias:
            return init(shape)
        # a forget gate open at the start lets gradients flow through c (Jozefowicz et al.,
        # 2015); Keras: [bias_init(u), ones(u), bias_init(2u)]
        u = self.units
        return jnp.concatenate(
            [
                init((u,)),
                jnp.ones((u,), jnp.float32),
                init((2 * u,)),
            ]
        )

    def step(self, xp, state, h_drop):
        h, c = state
        hr = h if h_drop is None else h * h_drop
        z = xp + hr @ self.recurrent_kernel[...]
        if (self.activation, self.recurrent_activation) == ("tanh", "sigmoid"):
            h, c = _lstm_update(z, c)  # same values; a backward pass that keeps less memory
            return h, (h, c)
        act, rec = self._act()
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = rec(f) * c + rec(i) * act(g)
        h = rec(o) * act(c)
        return h, (h, c)


# The LSTM update (z = x K + h R + b [B, 4u], c_{t-1}) -> (h_t, c_t) for the default activations,
# with a hand-written backward pass. Its values are those of LSTMCell's generic code; it exists for
# memory: autodiff would keep 12 [B, u] arrays per time step for the backward pass (each sigmoid and
# tanh keeps its output and its derivative), this keeps 6 (the four gates, tanh(c_t), c_{t-1}) and
# derives the derivatives from the outputs (s' = s (1 - s), tanh' = 1 - tanh^2). On XLA:CPU every
# byte of the step's scratch memory above glibc's 32 MiB mmap ceiling is fresh pages on every step
# (page faults: ~13k per step, ~30 ms, for B 32, T 64, u 256 before this and the chunking below).
@jax.custom_vjp
def _lstm_update(z, c):
    i, f, g, o = jnp.split(z, 4, axis=-1)
    c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
    return jax.nn.sigmoid(o) * jnp.tanh(c), c


def _lstm_update_fwd(z, c_prev):
    i, f, g, o = jnp.split(z, 4, axis=-1)
    i, f, g, o = jax.nn.sigmoid(i), jax.nn.sigmoid(f), jnp.tanh(g), jax.nn.sigmoid(o)
    c = f * c_prev + i * g
    tc = jnp.tanh(c)
    return (o * tc, c), (i, f, g, o, tc, c_prev)


def _lstm_update_bwd(res, cotangents):
    i, f, g, o, tc, c_prev = res
    dh, dc = cotangents
    dc = dc + dh * o * (1 - tc * tc)  # through h = o tanh(c)
    dz = jnp.concatenate(
        [
            dc * g * i * (1 - i),
            dc * c_prev * f * (1 - f),
            dc * i * (1 - g * g),
            dh * tc * o * (1 - o),
        ],
        axis=-1,
    )
    return dz, dc * f


_lstm_update.defvjp(_lstm_update_fwd, _lstm_update_bwd)


class GRUCell(RecurrentCell):
    """GRU with gate order z, r, h; `reset_after` as in Keras (True: its default, cuDNN's form)."""

    gates = 3
    state_names = ("h",)

    def __init__(self, in_features: int, units: int, *, reset_after: bool = True, **kw):
        self.reset_after = reset_after
        super().__init__(
            in_features, units, bias_shape=(2, 3 * units) if reset_after else None, **kw
        )

    def input_bias(self):
        if self.bias is None:
            return 0.0
        return self.bias[...][0] if self.reset_after else self.bias[...]

    def step(self, xp, state, h_drop):
        (h,) = state
        hr = h if h_drop is None else h * h_drop
        act, rec = self._act()
        u = self.units
        rk = self.recurrent_kernel[...]
        x_z, x_r, x_h = jnp.split(xp, 3, axis=-1)
        if self.reset_after:
            inner = hr @ rk
            if self.bias is not None:
                inner = inner + self.bias[...][1]
            r_z, r_r, r_h = jnp.split(inner, 3, axis=-1)
            z, r = rec(x_z + r_z), rec(x_r + r_r)
            hh = act(x_h + r * r_h)
        else:
            r_z, r_r = jnp.split(hr @ rk[:, : 2 * u], 2, axis=-1)
            z, r = rec(x_z + r_z), rec(x_r + r_r)
            hh = act(x_h + (r * hr) @ rk[:, 2 * u :])
        h = z * h + (1.0 - z) * hh
        return h, (h,)


CELLS: dict[str, type[RecurrentCell]] = {
    "rnn": SimpleRNNCell,
    "simple_rnn": SimpleRNNCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
}


def get_cell(name: str) -> type[RecurrentCell]:
    """A cell class by name: 'rnn' (= 'simple_rnn'), 'lstm', 'gru'."""
    if name not in CELLS:
        raise unknown_name("recurrent cell", name, CELLS)
    return CELLS[name]


def masking(x: jax.Array, mask_value: float = 0.0) -> jax.Array:
    """Keras's Masking layer: x [B, T, d] -> mask [B, T], False where all features == mask_value."""
    return jnp.any(x != mask_value, axis=-1)


PROJECTION_CHUNK = 16
"""Most time steps per input-projection matmul in `RNN` (see RNN.__call__)."""


def _chunk_steps(T: int, unroll: bool | int) -> int:
    """Steps per chunk: the largest divisor of T up to PROJECTION_CHUNK (all T with unroll=True,
    which unrolls every step). Any C gives the same results; it changes speed and memory only."""
    if unroll is True:
        return T
    return max(c for c in range(1, min(T, PROJECTION_CHUNK) + 1) if T % c == 0)


class RecurrentState(nnx.Variable):
    """The state a `stateful` recurrent layer carries from one call to the next: [S, B, u]
    (S = the cell's states, e.g. h and c). Not trained; kept with the model's other state."""


class RNN(nnx.Module):
    """Runs `cell` over a sequence with `jax.lax.scan` (Keras's `keras.layers.RNN`).

    x [B, T, d] -> [B, T, u] (return_sequences) or [B, u] (the last output); with return_state,
    a tuple (output, *final_state) — (output, h) or (output, h, c) for an LSTM. go_backwards
    reads the sequence from the end and returns the outputs in that (reversed) order, as Keras.
    `unroll`: True (all steps) or a number of steps per scan iteration; it changes speed, not
    results. `stateful=True` (Keras's option): the final state of a call is the initial state of
    the next (an explicit `initial_state` still wins), kept in `carried` (a `RecurrentState`,
    zeros at the start; `reset_states()` zeros it again). Give `batch_size` to create it at
    construction (needed under jit and in the Trainer); otherwise the first, eager, call
    creates it for its batch size."""

    def __init__(
        self,
        cell: RecurrentCell,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        unroll: bool | int = 1,
        zero_output_for_mask: bool = False,
        stateful: bool = False,
        batch_size: int | None = None,
    ):
        if not isinstance(unroll, bool) and (not isinstance(unroll, int) or unroll < 1):
            raise JaxdlError(f"unroll must be a bool or a positive int, got {unroll!r}")
        if batch_size is not None:
            check_positive(f"{type(self).__name__} batch_size", batch_size, integer=True)
        self.stateful = bool(stateful)
        self.carried = nnx.data(
            RecurrentState(jnp.zeros((cell.num_states, batch_size, cell.units), jnp.float32))
            if stateful and batch_size is not None
            else None
        )
        self.cell = cell
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards, self.unroll = go_backwards, unroll
        self.zero_output_for_mask = zero_output_for_mask

    @property
    def units(self) -> int:
        return self.cell.units

    def reset_states(self, states=None) -> None:
        """Zero the carried state of a stateful layer (or set it to `states`, one [B, u] array
        per cell state, as Keras's reset_states / the initial_state structure)."""
        if not self.stateful:
            raise JaxdlError(f"{self._name()}: reset_states needs stateful=True")
        if states is None:
            if self.carried is not None:
                self.carried[...] = jnp.zeros_like(self.carried[...])
            return
        if not isinstance(states, (tuple, list)):
            states = (states,)
        b = states[0].shape[0] if hasattr(states[0], "shape") else 0
        new = jnp.stack([jnp.asarray(s, jnp.float32) for s in self._state_tuple(states, b)])
        if self.carried is None:
            self.carried = nnx.data(RecurrentState(new))
        else:
            self.carried[...] = new

    def _state_tuple(self, states, batch: int) -> State:
        cell, want = self.cell, (batch, self.cell.units)
        got = [tuple(getattr(s, "shape", ())) for s in states]
        if len(got) != cell.num_states or any(g != want for g in got):
            raise JaxdlError(
                f"{self._name()}: states must be {cell.num_states} array(s) "
                f"({', '.join(cell.state_names)}) of shape {want}; got shapes {got}"
            )
        return tuple(states)

    def _name(self) -> str:
        return type(self).__name__

    def macs(self, args, out) -> int:
        """Multiply-adds of a call on x = args[0] [B, T, d] (for jaxdl.bench.summary): the input
        projection and the recurrent matmul at every step, T (d + u) G u per sequence."""
        B, T, d = args[0].shape
        return B * T * (d + self.cell.units) * self.cell.gates * self.cell.units

    def check(self, x, mask, initial_state) -> State | None:
        """Validate the call; returns the initial state as a tuple (or None)."""
        cell, name = self.cell, self._name()
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != 3 or shape[-1] != cell.in_features:
            raise JaxdlError(
                f"{name}: input shape {shape} does not fit; expected (B, T, "
                f"{cell.in_features}) (batch, time, features)"
            )
        if shape[1] == 0:
            raise JaxdlError(f"{name}: input has no time steps (shape {shape})")
        if mask is not None and tuple(mask.shape) != shape[:2]:
            raise JaxdlError(
                f"{name}: mask shape {tuple(mask.shape)} does not fit input {shape}; "
                f"expected {shape[:2]} (batch, time)"
            )
        if initial_state is None:
            return None
        if not isinstance(initial_state, (tuple, list)):
            initial_state = (initial_state,)
        want = (shape[0], cell.units)
        got = [tuple(getattr(s, "shape", ())) for s in initial_state]
        if len(got) != cell.num_states or any(g != want for g in got):
            names = ", ".join(cell.state_names)
            raise JaxdlError(
                f"{name}: initial_state must be {cell.num_states} array(s) ({names}) "
                f"of shape {want}; got shapes {got}"
            )
        return tuple(initial_state)

    def __call__(
        self, x, *, mask=None, initial_state=None, train: bool = False, rngs: nnx.Rngs | None = None
    ):
        state0 = self.check(x, mask, initial_state)
        cell = self.cell
        B, T, d = x.shape
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else jnp.float32
        if train and cell.dropout > 0:
            x = x * _dropout_mask(rngs, cell.dropout, (B, 1, d), dtype, "dropout")
        h_drop = None
        if train and cell.recurrent_dropout > 0:
            h_drop = _dropout_mask(
                rngs, cell.recurrent_dropout, (B, cell.units), dtype, "recurrent_dropout"
            )
        if self.stateful:
            if self.carried is None:
                self.carried = nnx.data(RecurrentState(jnp.zeros((cell.num_states, B, cell.units))))
            if self.carried.shape[1] != B:
                raise JaxdlError(
                    f"{self._name()}: a stateful layer keeps the batch size it was built for "
                    f"({self.carried.shape[1]}); got a batch of {B}"
                )
            if state0 is None:
                state0 = tuple(self.carried[...][i].astype(dtype) for i in range(cell.num_states))
        state = state0 if state0 is not None else cell.zero_state(B, dtype)
        xs = jnp.swapaxes(x, 0, 1)  # [T, B, d], time-major for the scan
        ms = None if mask is None else jnp.swapaxes(mask.astype(bool), 0, 1)[..., None]  # [T, B, 1]
        if self.go_backwards:
            xs = xs[::-1]
            ms = None if ms is None else ms[::-1]
        # The input half of the gates is hoisted out of the recurrence one chunk of C steps at a
        # time: one [C*B, d] x [d, G u] matmul per chunk (an outer scan over chunks), h R at every
        # step (an inner scan). All T steps at once would hold [T, B, G u] and its gradient in
        # memory (16 MiB for an LSTM at B 32, T 64, u 256: on XLA:CPU, scratch memory over 32 MiB is
        # page-faulted afresh on every step); C = 16 keeps the matmuls big and the buffers small.
        # The 2-D [C*B, d] input also makes the kernel's gradient a plain x^T dz matmul (a 3-D
        # contraction lowered to a transposed dot that XLA:CPU runs several times slower).
        C = _chunk_steps(T, self.unroll)
        xs = xs.reshape(T // C, C * B, d)
        ms = None if ms is None else ms.reshape(T // C, C, B, 1)

        zero_out = self.zero_output_for_mask

        def step(state, inputs):
            xp, m = inputs
            out, new = cell.step(xp, state, h_drop)
            if m is not None:
                # a padded step leaves the state as it was; the output repeats h_{t-1} (or is 0)
                new = tuple(jnp.where(m, n, s) for n, s in zip(new, state, strict=True))
                out = jnp.where(m, out, jnp.zeros_like(out) if zero_out else state[0])
            return new, out

        def chunk(state, inputs):
            xc, mc = inputs
            xp = cell.project(xc).reshape(C, B, -1)  # [C, B, G u]
            return jax.lax.scan(step, state, (xp, mc), unroll=self.unroll)

        final, outs = jax.lax.scan(chunk, state, (xs, ms))
        outs = outs.reshape(T, B, -1)
        if self.stateful:
            self.carried[...] = jnp.stack(final).astype(self.carried[...].dtype)
        y = jnp.swapaxes(outs, 0, 1) if self.return_sequences else outs[-1]
        return (y, *final) if self.return_state else y


class _CellRNN(RNN):
    """An RNN that builds its own cell: (in_features, units, cell options..., layer options...)."""

    cell_class: type[RecurrentCell] = RecurrentCell

    def __init__(
        self,
        in_features: int,
        units: int,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        unroll: bool | int = 1,
        zero_output_for_mask: bool = False,
        stateful: bool = False,
        batch_size: int | None = None,
        rngs: nnx.Rngs,
        **cell_options,
    ):
        super().__init__(
            self.cell_class(in_features, units, rngs=rngs, **cell_options),
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            unroll=unroll,
            zero_output_for_mask=zero_output_for_mask,
            stateful=stateful,
            batch_size=batch_size,
        )


class SimpleRNN(_CellRNN):
    """keras.layers.SimpleRNN: RNN(SimpleRNNCell(in_features, units, ...))."""

    cell_class = SimpleRNNCell


class LSTM(_CellRNN):
    """keras.layers.LSTM: RNN(LSTMCell(in_features, units, ...)); state (h, c)."""

    cell_class = LSTMCell


class GRU(_CellRNN):
    """keras.layers.GRU: RNN(GRUCell(in_features, units, reset_after=True, ...))."""

    cell_class = GRUCell


# the layer of each cell name in CELLS: one table of names
_LAYER_OF_CELL = {layer.cell_class: layer for layer in (SimpleRNN, LSTM, GRU)}
LAYERS: dict[str, type[_CellRNN]] = {name: _LAYER_OF_CELL[c] for name, c in CELLS.items()}


def get_layer(name: str) -> type[_CellRNN]:
    """A recurrent layer class by cell name: 'rnn' (= 'simple_rnn'), 'lstm', 'gru'."""
    return _LAYER_OF_CELL[get_cell(name)]


MERGE_MODES = ("concat", "sum", "mul", "ave", None)


class Bidirectional(nnx.Module):
    """keras.layers.Bidirectional: a forward and a backward (go_backwards) layer, merged.

    x [B, T, d] -> [B, T, 2u] (concat) or [B, T, u] (sum / mul / ave); [B, ...] without
    return_sequences. The backward outputs are flipped back to forward time before merging. With
    return_state: (output, *forward_state, *backward_state); initial_state likewise. As in Keras,
    masked steps output zeros when returning sequences. merge_mode=None returns both directions
    unmerged, (y_forward, y_backward) (then (y_forward, y_backward, *states) with return_state),
    as Keras does."""

    def __init__(self, forward: RNN, backward: RNN, merge_mode: str | None = "concat"):
        if merge_mode not in MERGE_MODES:
            raise unknown_name("merge mode", merge_mode, MERGE_MODES)
        if forward.stateful != backward.stateful:
            raise JaxdlError(
                f"Bidirectional: forward and backward layers differ in stateful: "
                f"{forward.stateful} vs {backward.stateful}"
            )
        if forward.go_backwards or not backward.go_backwards:
            raise JaxdlError(
                "Bidirectional: the forward layer needs go_backwards=False and the "
                "backward layer go_backwards=True"
            )
        for attr in ("return_sequences", "return_state", "units"):
            if getattr(forward, attr) != getattr(backward, attr):
                raise JaxdlError(
                    f"Bidirectional: forward and backward layers differ in {attr}: "
                    f"{getattr(forward, attr)} vs {getattr(backward, attr)}"
                )
        forward.zero_output_for_mask = backward.zero_output_for_mask = forward.return_sequences
        self.forward, self.backward, self.merge_mode = forward, backward, merge_mode
        self.return_sequences, self.return_state = forward.return_sequences, forward.return_state

    @classmethod
    def of(
        cls,
        cell: str,
        in_features: int,
        units: int,
        *,
        merge_mode: str | None = "concat",
        rngs: nnx.Rngs,
        **options,
    ) -> Bidirectional:
        """Both directions of the named cell ('rnn', 'lstm', 'gru'), each with its own weights."""
        layer = get_layer(cell)
        return cls(
            layer(in_features, units, rngs=rngs, **options),
            layer(in_features, units, go_backwards=True, rngs=rngs, **options),
            merge_mode,
        )

    @property
    def units(self) -> int:
        """Width of the output (of each of the two outputs when merge_mode is None)."""
        return 2 * self.forward.units if self.merge_mode == "concat" else self.forward.units

    def reset_states(self, states=None) -> None:
        """Both directions' `reset_states` (states: forward then backward, or None)."""
        n = self.forward.cell.num_states
        self.forward.reset_states(None if states is None else tuple(states[:n]))
        self.backward.reset_states(None if states is None else tuple(states[n:]))

    def __call__(self, x, *, mask=None, initial_state=None, train=False, rngs=None):
        fs = bs = None
        if initial_state is not None:
            n = self.forward.cell.num_states
            if len(initial_state) != 2 * n:
                raise JaxdlError(
                    f"Bidirectional: initial_state must hold {2 * n} arrays "
                    f"(forward then backward), got {len(initial_state)}"
                )
            fs, bs = tuple(initial_state[:n]), tuple(initial_state[n:])
        kw = dict(mask=mask, train=train, rngs=rngs)
        yf = self.forward(x, initial_state=fs, **kw)
        yb = self.backward(x, initial_state=bs, **kw)
        states = ()
        if self.return_state:
            (yf, *sf), (yb, *sb) = yf, yb
            states = (*sf, *sb)
        if self.return_sequences:
            yb = yb[:, ::-1]
        if self.merge_mode == "concat":
            y = jnp.concatenate([yf, yb], axis=-1)
        elif self.merge_mode == "sum":
            y = yf + yb
        elif self.merge_mode == "mul":
            y = yf * yb
        elif self.merge_mode == "ave":
            y = (yf + yb) / 2
        else:  # None: both, unmerged
            return (yf, yb, *states) if self.return_state else (yf, yb)
        return (y, *states) if self.return_state else y


class RecurrentStack(nnx.Module):
    """Stacked recurrent layers (each optionally bidirectional), dropout between them.

    x [B, T, d] -> [B, T, u_last'] (return_sequences) or [B, u_last'] (u' = 2u for concatenated
    bidirectional layers). Every layer but the last returns sequences. With return_state the call
    returns (output, states) where states[l] is layer l's final state tuple (forward then backward
    for bidirectional layers); `initial_state` takes the same structure (or None)."""

    def __init__(
        self,
        cell: str,
        in_features: int,
        units: Sequence[int],
        *,
        bidirectional: bool = False,
        merge_mode: str = "concat",
        dropout: float = 0.0,
        return_sequences: bool = True,
        unroll: bool | int = 1,
        rngs: nnx.Rngs,
        **cell_options,
    ):
        layer_class = get_layer(cell)
        if bidirectional and merge_mode is None:
            raise JaxdlError(
                "RecurrentStack: merge_mode=None (two unmerged outputs) cannot feed the next "
                "layer; use 'concat', 'sum', 'mul' or 'ave'"
            )
        if not units:
            raise JaxdlError("RecurrentStack: units must list at least one layer width")
        if not 0.0 <= dropout < 1.0:
            raise JaxdlError(f"RecurrentStack: dropout must be in [0, 1), got {dropout}")
        layers, d = [], in_features
        for i, u in enumerate(units):
            opts = dict(
                return_sequences=return_sequences or i < len(units) - 1,
                return_state=True,
                unroll=unroll,
                rngs=rngs,
                **cell_options,
            )
            if bidirectional:
                layer = Bidirectional(
                    layer_class(d, u, **opts),
                    layer_class(d, u, go_backwards=True, **opts),
                    merge_mode,
                )
            else:
                layer = layer_class(d, u, **opts)
            layers.append(layer)
            d = layer.units
        self.layers = nnx.List(layers)
        self.out_features = d
        self.drop = nnx.Dropout(dropout) if dropout > 0 else None

    def __call__(
        self,
        x,
        *,
        mask=None,
        initial_state=None,
        return_state: bool = False,
        train: bool = False,
        rngs: nnx.Rngs | None = None,
    ):
        if initial_state is not None and len(initial_state) != len(self.layers):
            raise JaxdlError(
                f"RecurrentStack: initial_state must hold one state per layer "
                f"({len(self.layers)}), got {len(initial_state)}"
            )
        states = []
        for i, layer in enumerate(self.layers):
            if i and self.drop is not None:
                x = self.drop(x, deterministic=not train, rngs=rngs)
            s0 = None if initial_state is None else initial_state[i]
            x, *s = layer(x, mask=mask, initial_state=s0, train=train, rngs=rngs)
            states.append(tuple(s))
        return (x, states) if return_state else x


class TimeDistributed(nnx.Module):
    """Applies `module` to every time step: [B, T, ...] -> [B, T, ...out] (Keras's wrapper)."""

    def __init__(self, module: nnx.Module):
        self.module = module

    def __call__(self, x, **kwargs):
        B, T = x.shape[:2]
        y = self.module(x.reshape(B * T, *x.shape[2:]), **kwargs)
        return y.reshape(B, T, *y.shape[1:])


class Embedding(nnx.Module):
    """keras.layers.Embedding: ids [B, T] (int) -> [B, T, output_dim].

    Parameter `embeddings` [input_dim, output_dim], uniform in [-0.05, 0.05] as Keras. With
    `mask_zero`, id 0 is padding and `compute_mask(ids)` gives the [B, T] mask of real tokens."""

    def __init__(self, input_dim: int, output_dim: int, *, mask_zero: bool = False, rngs: nnx.Rngs):
        check_positive("Embedding input_dim", input_dim, integer=True)
        check_positive("Embedding output_dim", output_dim, integer=True)
        self.input_dim, self.output_dim, self.mask_zero = input_dim, output_dim, mask_zero
        init = nnx.initializers.uniform(0.1)  # U[0, 0.1) shifted to Keras's U[-0.05, 0.05)
        self.embeddings = nnx.Param(
            init(rngs.params(), (input_dim, output_dim), jnp.float32) - 0.05
        )

    def __call__(self, ids: jax.Array, *, train: bool = False, rngs=None) -> jax.Array:
        if not jnp.issubdtype(ids.dtype, jnp.integer):
            raise JaxdlError(f"Embedding: expected integer token ids, got dtype {ids.dtype}")
        return jnp.take(self.embeddings[...], ids, axis=0)

    def compute_mask(self, ids: jax.Array) -> jax.Array | None:
        return (ids != 0) if self.mask_zero else None


__all__ = [
    "RecurrentCell",
    "SimpleRNNCell",
    "LSTMCell",
    "GRUCell",
    "CELLS",
    "get_cell",
    "masking",
    "RNN",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "LAYERS",
    "get_layer",
    "Bidirectional",
    "MERGE_MODES",
    "RecurrentStack",
    "TimeDistributed",
    "Embedding",
]

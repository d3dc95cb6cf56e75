"""Recurrent layers (SCOPE.md section 7, DESIGN.md decision 3): a cell plus one `lax.scan` driver.

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
        self.bias = nnx.Param(self.initial_bias(bias_shape or (gu,))) if use_bias else None

    def initial_bias(self, shape) -> jax.Array:
        return jnp.zeros(shape, jnp.float32)

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

    def initial_bias(self, shape):
        b = jnp.zeros(shape, jnp.float32)
        # a forget gate open at the start lets gradients flow through c (Jozefowicz et al., 2015)
        return b.at[self.units : 2 * self.units].set(1.0) if self.unit_forget_bias else b

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


class RNN(nnx.Module):
    """Runs `cell` over a sequence with `jax.lax.scan` (Keras's `keras.layers.RNN`).

    x [B, T, d] -> [B, T, u] (return_sequences) or [B, u] (the last output); with return_state,
    a tuple (output, *final_state) — (output, h) or (output, h, c) for an LSTM. go_backwards
    reads the sequence from the end and returns the outputs in that (reversed) order, as Keras.
    `unroll`: True (all steps) or a number of steps per scan iteration; it changes speed, not
    results."""

    def __init__(
        self,
        cell: RecurrentCell,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        unroll: bool | int = 1,
        zero_output_for_mask: bool = False,
    ):
        if not isinstance(unroll, bool) and (not isinstance(unroll, int) or unroll < 1):
            raise JaxdlError(f"unroll must be a bool or a positive int, got {unroll!r}")
        self.cell = cell
        self.return_sequences, self.return_state = return_sequences, return_state
        self.go_backwards, self.unroll = go_backwards, unroll
        self.zero_output_for_mask = zero_output_for_mask

    @property
    def units(self) -> int:
        return self.cell.units

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


LAYERS: dict[str, type[_CellRNN]] = {
    "rnn": SimpleRNN,
    "simple_rnn": SimpleRNN,
    "lstm": LSTM,
    "gru": GRU,
}


def get_layer(name: str) -> type[_CellRNN]:
    """A recurrent layer class by cell name: 'rnn' (= 'simple_rnn'), 'lstm', 'gru'."""
    if name not in LAYERS:
        raise unknown_name("recurrent cell", name, LAYERS)
    return LAYERS[name]


MERGE_MODES = ("concat", "sum", "mul", "ave")


class Bidirectional(nnx.Module):
    """keras.layers.Bidirectional: a forward and a backward (go_backwards) layer, merged.

    x [B, T, d] -> [B, T, 2u] (concat) or [B, T, u] (sum / mul / ave); [B, ...] without
    return_sequences. The backward outputs are flipped back to forward time before merging. With
    return_state: (output, *forward_state, *backward_state); initial_state likewise. As in Keras,
    masked steps output zeros when returning sequences."""

    def __init__(self, forward: RNN, backward: RNN, merge_mode: str = "concat"):
        if merge_mode not in MERGE_MODES:
            raise unknown_name("merge mode", merge_mode, MERGE_MODES)
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
        merge_mode: str = "concat",
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
        return 2 * self.forward.units if self.merge_mode == "concat" else self.forward.units

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
        else:
            y = (yf + yb) / 2
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

"""The training engine: losses, metrics, optimizers, train state, pure steps, fit/evaluate/predict."""

from jaxdl.train.callbacks import (
    BackupAndRestore,
    Callback,
    CallbackList,
    EarlyStopping,
    History,
    LambdaCallback,
    LazyLogs,
    LearningRateScheduler,
    ModelCheckpoint,
    ProgbarLogger,
    ReduceLROnPlateau,
    SwapEMAWeights,
    TerminateOnNaN,
)
from jaxdl.train.logging import CSVLogger, TensorBoard
from jaxdl.train.loop import (
    EXIT_NONFINITE,
    EXIT_PREEMPTED,
    NonFiniteLossError,
    Preempted,
    Trainer,
    output_shape,
)
from jaxdl.train.optim import (
    OPTIMIZERS,
    SCHEDULES,
    Regularizer,
    current_learning_rate,
    make_optimizer,
    make_schedule,
    regularization_penalty,
    scale_learning_rate,
)
from jaxdl.train.state import TrainState
from jaxdl.train.steps import make_eval_step, make_predict_step, make_train_step
from jaxdl.train.tasks import ClassificationTask, LanguageModelTask, RegressionTask, Task

__all__ = [
    "Callback",
    "CallbackList",
    "History",
    "LazyLogs",
    "ProgbarLogger",
    "Trainer",
    "output_shape",
    "OPTIMIZERS",
    "SCHEDULES",
    "Regularizer",
    "current_learning_rate",
    "make_optimizer",
    "make_schedule",
    "regularization_penalty",
    "scale_learning_rate",
    "TrainState",
    "make_eval_step",
    "make_predict_step",
    "make_train_step",
    "ClassificationTask",
    "LanguageModelTask",
    "RegressionTask",
    "Task",
    "BackupAndRestore",
    "EarlyStopping",
    "LambdaCallback",
    "LearningRateScheduler",
    "ModelCheckpoint",
    "ReduceLROnPlateau",
    "SwapEMAWeights",
    "TerminateOnNaN",
    "CSVLogger",
    "TensorBoard",
    "EXIT_NONFINITE",
    "EXIT_PREEMPTED",
    "NonFiniteLossError",
    "Preempted",
]

"""An experiment type's model table, and the validated settings of one experiment's config.

:class:`ModelSpec` is one entry of a type's ``MODELS`` table (what builds the model, which
parameters it takes, which extra installs it); :class:`ExperimentSettings` is what
:meth:`~observml.experiments.base.Experiment.validate_config` returns.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from observml.errors import ConfigError, ConfigProblem
from observml.retraining.policy import RetrainPolicy

__all__ = ["ExperimentSettings", "ModelSpec"]


@dataclass(frozen=True)
class ModelSpec:
    """One entry of an experiment type's model table.

    Attributes:
        target: ``"module:attr"`` of the class or function that builds the model; its
            signature lists the ``create_model.params`` accepted. Imported on first use.
        defaults: Values used for target parameters the config leaves out.
        options: Parameters our own code reads (name -> default), accepted on top of the
            target's, e.g. ``contamination`` or ``alpha``.
        exclude: Target parameters the experiment passes itself (not configurable).
        extra: The ``observml`` extra that installs the target's package.
        summary: One line for docs and error messages.
        adapter: Optional ``"module:attr"`` wrapping the built target:
            ``adapter(target(**params), **options)`` (see :meth:`build`).
        requires: Modules that must import for the model to work (checked by :meth:`load`
            when the target itself imports them lazily).
        install: The install command the missing-package error gives, when it is more than
            ``pip install 'observml[<extra>]'`` (e.g. PyTorch's CPU index).
        instead: For a model of an optional extra: the closest model that needs no extra, and
            why, named by the missing-package error (``"'arima': ..."``).
        in_sample_scores: Whether the model's scores on its own training rows look like its
            scores on new rows of the same process; ``False`` makes the drift test's
            ``reference: auto`` take its reference from the stream.
    """

    target: str
    defaults: Mapping[str, Any] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()
    extra: str | None = None
    summary: str = ""
    adapter: str | None = None
    requires: tuple[str, ...] = ()
    in_sample_scores: bool = True
    install: str = ""
    instead: str = ""

    def load(self, where: str = "create_model.model") -> Any:
        """Import and return the target.

        Raises:
            ConfigError: Its package is missing; says which extra to install.
        """
        for module_name in self.requires:
            self._import(module_name, where)
        return self._resolve(self.target, where)

    def build(self, params: Mapping[str, Any], options: Mapping[str, Any]) -> Any:
        """Return ``adapter(target(**params), **options)`` (or ``target(**params)``)."""
        model = self.load()(**params)
        if self.adapter is None:
            return model
        return self._resolve(self.adapter, "create_model.model")(model, **options)

    def _resolve(self, target: str, where: str) -> Any:
        module_name, _, attr = target.partition(":")
        obj: Any = self._import(module_name, where)
        for part in attr.split("."):
            obj = getattr(obj, part)
        return obj

    def _import(self, module_name: str, where: str) -> Any:
        try:
            return importlib.import_module(module_name)
        except ImportError as exc:
            fix = self.install or (
                f"pip install 'observml[{self.extra}]'"
                if self.extra
                else f"pip install {module_name.split('.')[0]}"
            )
            other = f". Without it, the closest model is {self.instead}." if self.instead else ""
            raise ConfigError(
                f"the model needs {(exc.name or module_name).split('.')[0]!r}, which is not"
                f" installed. Install it with: {fix}{other}",
                key=where,
            ) from exc

    def check(
        self, raw: Mapping[str, Any], where: str = "create_model.params"
    ) -> list[ConfigProblem]:
        """Return a problem for each value of ``raw`` its target or adapter does not take.

        Types (and, for scikit-learn estimators and our adapters, ranges) come from the
        target's ``_parameter_constraints``, else its annotations, else its defaults (see
        :mod:`observml.experiments.param_check`). Unknown names are not checked here.
        """
        from observml.experiments.param_check import check_params

        adapter = self._resolve(self.adapter, "create_model.model") if self.adapter else None
        return check_params(
            raw,
            target=self.load(),
            adapter=adapter,
            options=self.options,
            defaults=self.defaults,
            where=where,
        )

    def accepted(self, where: str = "create_model.model") -> dict[str, Any]:
        """Return ``{param: default}`` of every accepted parameter (options first)."""
        target = self.load(where)
        params: dict[str, Any] = dict(self.options)
        for name, p in inspect.signature(target).parameters.items():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or name in self.exclude:
                continue
            if name not in params:
                params[name] = self.defaults.get(name, None if p.default is p.empty else p.default)
        return params


@dataclass(frozen=True)
class ExperimentSettings:
    """A validated config: what :meth:`Experiment.validate_config` returns."""

    model: str
    spec: ModelSpec
    params: dict[str, Any]
    options: dict[str, Any]
    setup: dict[str, Any]
    format: dict[str, Any] | None
    eda: bool
    retrain: RetrainPolicy
    metric: str

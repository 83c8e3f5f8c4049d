"""Where a run's network starts: ImageNet (or no) encoder weights, or a whole trained model (``model.init``).

Fine-tuning takes the architecture from the model it starts from: a run that asks for another one is
stopped with both named, before a run folder is made, not quietly given the wrong network. With the model's
own classes every weight is kept; with other classes (a user's table, the 7 categories) every layer but the
last, and the run says so in one line and records it in its config (``model.init_head``).
"""

from __future__ import annotations

from cityseg.config import Config, ModelConfig
from cityseg.errors import CitysegError

HEADS = ("kept", "new")  # model.init_head: the model's own last layer, or a fresh one for other classes


def adopt_init_architecture(config: Config):
    """Check ``config.model.init`` and take its architecture and encoder; returns the model's ModelInfo.

    A config that still has the default architecture or encoder takes the model's; one that names others is an
    error.

    Raises:
        CitysegError: no such model, or one of another architecture or encoder than the run asks for.
    """
    from cityseg.backends import read_model_info
    from cityseg.model_sources import locate_model

    model = config.model
    info = read_model_info(locate_model(model.init).folder)
    defaults = ModelConfig()
    for field, theirs in (("arch", info.arch), ("encoder", info.encoder)):
        mine = getattr(model, field)
        if mine.lower() != theirs.lower() and mine != getattr(defaults, field):
            raise CitysegError(
                f"--init {model.init} is {info.arch}/{info.encoder} but the run asks for {model.arch}/{model.encoder}; "
                "drop --arch/--encoder (the architecture comes from the model you start from), or leave out --init"
            )
    model.arch, model.encoder = info.arch, info.encoder
    return info


def prepare_init(config: Config, class_names: tuple[str, ...]) -> str:
    """:func:`adopt_init_architecture`, then record in ``model.init_head`` whether the last layer is kept or new
    for ``class_names``; returns the line the run says about it."""
    info = adopt_init_architecture(config)
    model = config.model
    same = tuple(info.names) == tuple(class_names)
    model.init_head = HEADS[0] if same else HEADS[1]
    if same:
        network = f"{info.arch}/{info.encoder}, {len(class_names)} classes"
        return f"cityseg: starting from {model.init}: its whole network ({network})"
    return (
        f"cityseg: starting from {model.init}: every layer but the last; the head starts afresh for "
        f"{len(class_names)} classes ({model.init} has {info.num_classes}: {info.class_set_name})"
    )


def init_network(config: Config, class_names: tuple[str, ...], load_weights: bool = True):
    """The network of ``config.model.init`` for ``class_names`` (:func:`cityseg.models.network_from_model`),
    and what filled it, for :attr:`cityseg.models.ModelInfo.encoder_weights`; ``load_weights=False`` builds
    the same architecture untrained (a resumed run's checkpoint fills it)."""
    from cityseg.model_sources import resolve_model_dir
    from cityseg.models import network_from_model

    net, kept = network_from_model(resolve_model_dir(config.model.init), tuple(class_names), load_weights)
    if not load_weights:
        return net, "none"
    return net, f"init {config.model.init} ({'whole network' if kept else 'all but the head'})"

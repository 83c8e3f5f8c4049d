"""Where a run's network starts: ImageNet (or no) encoder weights, or a whole trained model (``model.init``).

Fine-tuning takes the architecture from the model it starts from: a run that asks for another one is
stopped with both named, before a run folder is made, not quietly given the wrong network. With the model's
own classes every weight is kept; with other classes (a user's table, the 7 categories) every layer but the
last, and the run says so in one line and records it in its config (``model.init_head``). The layers the model
gives learn at a tenth of the peak LR (``optim.init_lr_scale``), a new head at the LR itself
(:func:`parameter_groups`): a recipe's LR, made for layers that start from ImageNet, would first undo what the
trained layers know.
"""

from __future__ import annotations

from cityseg.config import Config, ModelConfig
from cityseg.errors import CitysegError
from cityseg.models.saved import HEAD_PREFIX, mapped_head_rows

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
    rates = _rates_line(config, same)
    if same:
        network = f"{info.arch}/{info.encoder}, {len(class_names)} classes"
        return f"cityseg: starting from {model.init}: its whole network ({network}){rates}"
    target = target_classes(config, class_names)
    mapped = mapped_head_rows(info.classes, target) if target is not None else None
    head = (
        f"the head starts afresh for {len(class_names)} classes ({model.init} has {info.num_classes}: "
        f"{info.class_set_name})"
    )
    if mapped:
        by_name = info.classes.table is not None or target.table is not None
        matched = sum(map(bool, mapped))
        basis = f"by name ({matched} of {len(class_names)}; the rest afresh)" if by_name else "by their label ids"
        head = (
            f"the head for {len(class_names)} classes starts from its {info.num_classes} ({info.class_set_name}) "
            f"mapped {basis}"
        )
    return f"cityseg: starting from {model.init}: every layer but the last; {head}{rates}"


def target_classes(config: Config, class_names: tuple[str, ...]):
    """The run's class set (``labels.classes``) for a head mapped from the model's classes
    (``model.init_map_head``), when it is the one ``class_names`` come from; else None."""
    from cityseg.classes import class_set

    if not config.model.init_map_head:
        return None
    try:
        chosen = class_set(config.labels.classes)
    except (ValueError, CitysegError):  # kmeans, or a table that is not there: nothing to map onto
        return None
    return chosen if tuple(chosen.names) == tuple(class_names) else None


def _rates_line(config: Config, head_kept: bool) -> str:
    scale, lr = config.optim.init_lr_scale, config.optim.lr
    if scale == 1:
        return ""
    layers = "it learns" if head_kept else "its layers learn"
    return f"; {layers} at {lr * scale:g} (LR x optim.init_lr_scale {scale:g})" + (
        "" if head_kept else f", the head at {lr:g}"
    )


def parameter_groups(net, config: Config) -> list[dict]:
    """The optimiser's parameter groups: every trainable parameter at ``optim.lr``; after ``model.init``, those
    the model gave at ``optim.lr x optim.init_lr_scale`` and a new head's at ``optim.lr``."""
    named = [(name, p) for name, p in net.named_parameters() if p.requires_grad]
    lr, scale = config.optim.lr, config.optim.init_lr_scale
    if not config.model.init or scale == 1:
        return [{"params": [p for _, p in named]}]
    fresh_head = config.model.init_head == HEADS[1]
    given, new = [], []
    for name, parameter in named:
        (new if fresh_head and name.startswith(HEAD_PREFIX) else given).append(parameter)
    return [{"params": given, "lr": lr * scale}] + ([{"params": new, "lr": lr}] if new else [])


def init_network(config: Config, class_names: tuple[str, ...], load_weights: bool = True):
    """The network of ``config.model.init`` for ``class_names`` (:func:`cityseg.models.network_from_model`),
    and what filled it, for :attr:`cityseg.models.ModelInfo.encoder_weights`; ``load_weights=False`` builds
    the same architecture untrained (a resumed run's checkpoint fills it)."""
    from cityseg.model_sources import resolve_model_dir
    from cityseg.models import network_from_model

    folder = resolve_model_dir(config.model.init)
    target = target_classes(config, tuple(class_names))
    net, kept = network_from_model(folder, tuple(class_names), load_weights, classes=target)
    if not load_weights:
        return net, "none"
    return net, f"init {config.model.init} ({'whole network' if kept else 'all but the head'})"

"""The fast paths of the per-channel CAMs (Score-CAM, Ablation-CAM) and of FullGrad against pytorch-grad-cam: the
same maps in float32, any batch, any chunk, an out-of-memory split, and bf16 within its budget on a trained model."""
import pytest
import torch

from models import create_model
from utils.evaluation.model import load_trained_model
from utils.explain import (
    BatchContext,
    FastFullGrad,
    GradCamPackageMethod,
    PerChannelCAM,
    create_saliency,
)
from utils.runtime.forward import ForwardSettings

pytestmark = pytest.mark.usefixtures("one_thread")

# 1/16-width architectures: ScoreCAM / AblationCAM run one forward per channel of the target layer (here 32)
NARROW = {"resnet18": dict(channels=(4, 8, 16, 32), stem_width=4), "convnext_tiny": dict(dims=(8, 16, 32, 64))}
CASES = [("resnet18", "gap"), ("resnet18", "ca"), ("convnext_tiny", "ca")]
# bf16 masked forwards against float32 on the trained EfficientNet-Lite0 CA model. Measured on two trainings of
# it (the suite's model depends on the thread count it was trained with): Spearman >= 0.886, bf16's channel within
# float32's first 4 of 1280, maps' mean absolute difference 0.037 (12 images) and 0.18 (4 images)
SCORECAM_BF16_BUDGET = {"spearman": 0.8, "top_share": 0.01, "map_mean": 0.25}


def _narrow(backbone, pool, seed=3):
    torch.manual_seed(seed)
    return create_model(backbone, pool=pool, num_classes=10, **NARROW[backbone]).eval()


@pytest.fixture(scope="module")
def images():
    return torch.randn(3, 3, 96, 96, generator=torch.Generator().manual_seed(4))


def _informative(maps):
    """Maps whose maximum is 1: not all zero after the ReLU, so that a comparison means something."""
    return int((maps.flatten(1).max(1).values == 1).sum())


@pytest.mark.parametrize("variant", ["scorecam", "ablationcam"])
@pytest.mark.parametrize("backbone, pool", CASES)
def test_per_channel_fast_path_equals_package(images, backbone, pool, variant):
    model = _narrow(backbone, pool)
    targets = torch.tensor([1, 7, 3])
    # a package batch of 12 over 32 channels: the ablation values where the minimum is not 0 (ConvNeXt) depend on it
    fast = create_saliency(variant, model, batch_size=12)
    assert isinstance(fast, PerChannelCAM) and fast.engine == "fast"
    ours = fast(images, targets)
    theirs = create_saliency(variant, model, engine="package", batch_size=12)(images, targets)
    assert ours.shape == theirs.shape == (3, 3, 3)
    assert (ours - theirs).abs().max() < 1e-4
    assert _informative(ours) >= 2


def test_ablation_values_where_the_minimum_is_not_zero_follow_the_package(images):
    """The package ablates a channel to m - k * 1e7 (k: its row in the package's batch) where the activations'
    minimum m is not 0; the target's output is shifted here so that it is not (the maps then depend on the
    package's batch)."""
    model = _narrow("resnet18", "ca")
    targets = torch.tensor([1, 7, 3])
    handle = model.cam_target_layer.register_forward_hook(lambda module, args, output: output - 1)
    try:
        package = {size: create_saliency("ablationcam", model, engine="package", batch_size=size)(images, targets)
                   for size in (12, 32)}
        ours = create_saliency("ablationcam", model, batch_size=12)(images, targets)
    finally:
        handle.remove()
    assert (package[12] - package[32]).abs().max() > 0.1  # the case matters
    assert (ours - package[12]).abs().max() < 1e-4 and _informative(ours) == 3


def test_ablation_runs_the_head_only_when_the_target_is_the_last_map(images):
    """The default target: the head alone on the ablated maps; another layer: the whole model, equal to the
    package either way."""
    model = _narrow("resnet18", "ca")
    default = PerChannelCAM(model, "ablationcam")
    default(images[:1], torch.tensor([2]))
    assert default.head_only is True
    layer = model.backbone.layer4[0]
    other = create_saliency("ablationcam", model, target_layer=layer)
    ours = other(images, torch.tensor([1, 7, 3]))
    assert other.head_only is False
    theirs = GradCamPackageMethod(model, "AblationCAM", [layer])(images, torch.tensor([1, 7, 3]))
    assert (ours - theirs).abs().max() < 1e-4 and _informative(ours) >= 2


@pytest.mark.parametrize("backbone, pool", CASES)
def test_fullgrad_equals_package(images, backbone, pool):
    model = _narrow(backbone, pool)
    targets = torch.tensor([1, 7, 3])
    fast = create_saliency("fullgrad", model)
    assert isinstance(fast, FastFullGrad) and fast.resolution == "input"
    ours = fast(images, targets)
    theirs = create_saliency("fullgrad", model, engine="package")(images, targets)
    assert ours.shape == theirs.shape == (3, 96, 96)
    assert (ours - theirs).abs().max() < 1e-4 and _informative(ours) == 3


@pytest.mark.parametrize("name", ["scorecam", "ablationcam", "fullgrad"])
def test_batch_and_chunk_do_not_change_the_maps(images, name):
    model = _narrow("resnet18", "ca")
    targets = torch.tensor([1, 7, 3])
    whole = create_saliency(name, model, forward=ForwardSettings(chunk=1000))(images, targets)
    for chunk in (1, 7):
        method = create_saliency(name, model, forward=ForwardSettings(chunk=chunk))
        assert (method(images, targets) - whole).abs().max() < 1e-5, chunk
    one_by_one = torch.cat([create_saliency(name, model)(images[i:i + 1], targets[i:i + 1]) for i in range(3)])
    assert (one_by_one - whole).abs().max() < 1e-5


def test_default_targets_are_top1(images):
    model = _narrow("resnet18", "gap")
    with torch.no_grad():
        top1 = model(images).argmax(1)
    for name in ("scorecam", "ablationcam", "fullgrad"):
        method = create_saliency(name, model)
        assert torch.equal(method(images), method(images, top1)), name


def test_per_channel_chunks_that_run_out_of_memory_are_split(images):
    """Score-CAM's masked forwards and Ablation-CAM's whole-model forwards above 5 images raise CUDA's
    out-of-memory error: the chunks are halved until they fit, with the same maps; at 1 image the error stands."""
    model = _narrow("resnet18", "ca")
    targets = torch.tensor([1, 7, 3])
    sizes = []

    def limit(module, args, most=5):
        if args[0].shape[0] > most:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        sizes.append(args[0].shape[0])

    layer = model.backbone.layer4[0]  # not the last map: Ablation-CAM forwards the whole model
    want = {name: create_saliency(name, model, forward=ForwardSettings(chunk=4), target_layer=layer)(images, targets)
            for name in ("scorecam", "ablationcam")}
    handle = model.register_forward_pre_hook(limit)
    try:
        for name in ("scorecam", "ablationcam"):
            sizes.clear()
            method = create_saliency(name, model, forward=ForwardSettings(chunk=64), target_layer=layer)
            assert (method(images, targets) - want[name]).abs().max() < 1e-5 and max(sizes) <= 5, name
    finally:
        handle.remove()
    handle = model.register_forward_pre_hook(lambda module, args: limit(module, args, most=0))
    try:
        with pytest.raises(torch.cuda.OutOfMemoryError):
            create_saliency("scorecam", model, forward=ForwardSettings(chunk=8))(images, targets)
    finally:
        handle.remove()


def test_scorecam_forwards_the_zero_image_once_for_all_dead_channels():
    """A channel whose map is all zero masks the image to zeros: one forward for all of them."""
    model = _narrow("resnet18", "gap")
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    layer = model.cam_target_layer
    with torch.no_grad():
        activations = []
        handle = layer.register_forward_hook(lambda module, args, output: activations.append(output))
        model(images)
        handle.remove()
    live = int(activations[0].flatten(2).ne(0).any(2).sum())
    assert live < activations[0].shape[0] * activations[0].shape[1]  # some channels are dead: the case is tested
    counted = []
    handle = model.register_forward_pre_hook(lambda module, args: counted.append(args[0].shape[0]))
    try:
        ours = create_saliency("scorecam", model, forward=ForwardSettings(chunk=1000))(images, torch.tensor([1, 2]))
    finally:
        handle.remove()
    assert sum(counted) == live + 1
    theirs = create_saliency("scorecam", model, engine="package")(images, torch.tensor([1, 2]))
    assert (ours - theirs).abs().max() < 1e-4


def test_fast_paths_leave_no_hooks_and_no_grads(images):
    model = _narrow("resnet18", "ca")
    for name in ("scorecam", "ablationcam", "fullgrad"):
        create_saliency(name, model)(images[:1], torch.tensor([1]))
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


def test_fast_path_errors_name_the_value():
    model = _narrow("resnet18", "gap")
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        create_saliency("scorecam", model, batch_size=0)
    with pytest.raises(ValueError, match="FullGrad has no target layer"):
        create_saliency("fullgrad", model, target_layer=model.backbone.layer3)
    with pytest.raises(ValueError, match="no per-channel fast path for 'gradcam'"):
        PerChannelCAM(model, "gradcam")
    unused = torch.nn.Conv2d(3, 3, 1)
    with pytest.raises(ValueError, match="Conv2d, the target layer, did not run in the forward"):
        PerChannelCAM(model, "scorecam", target_layer=unused)(torch.randn(1, 3, 32, 32), torch.tensor([0]))


def _spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    ranks = [x.argsort(dim=1).argsort(dim=1).float() for x in (a, b)]
    x, y = (r - r.mean(dim=1, keepdim=True) for r in ranks)
    return (x * y).sum(dim=1) / (x.norm(dim=1) * y.norm(dim=1))


@pytest.mark.slow  # ~20 s (2 x 1280 masked forwards per image); the fp32 equality tests stay in the default run
def test_scorecam_bf16_within_budget(trained_runs):
    """bf16 autocast on the masked forwards of a trained model (EfficientNet-Lite0 CA, 96 px, 1280 channels).

    The budget is on what bf16 changes, the channel scores (the target logit of each masked image), and through them
    on the maps: on a trained model Score-CAM's softmax over logits is nearly one-hot (its largest weight is above
    0.99 on most images), so a map is mostly one channel's map, and bf16's error on the logits (5-10% on this model)
    can hand the weight to a channel that float32 ranks just below the first. Budget (SCORECAM_BF16_BUDGET): the
    scores rank-correlated with float32's, the channel with bf16's largest weight among float32's first 1%, and the
    maps' mean absolute difference after min-max bounded."""
    from utils.data import DataSource, Preprocessing, build_dataset

    model, config = load_trained_model(str(trained_runs["ca"]))
    dataset = build_dataset(DataSource(), Preprocessing(96, mean=config["mean"], std=config["std"]), train=False,
                            num_classes=config["classes"])
    images = torch.stack([dataset[i][0] for i in range(0, 60, 15)])
    targets = torch.tensor([dataset[i][1] for i in range(0, 60, 15)])
    fp32 = create_saliency("scorecam", model, forward=ForwardSettings(chunk=256))
    bf16 = create_saliency("scorecam", model, forward=ForwardSettings(chunk=256, amp="bf16", channels_last=True))
    scores: dict[str, torch.Tensor] = {}
    for name, method in (("fp32", fp32), ("bf16", bf16)):  # keep each call's channel scores
        method._scorecam_scores = lambda *args, _score=method._scorecam_scores, _name=name: scores.setdefault(
            _name, _score(*args))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)  # 2 x 1280 masked forwards per image: the module's one thread would double the time
    try:
        difference = (bf16(images, targets) - fp32(images, targets)).abs()
    finally:
        torch.set_num_threads(threads)
    assert _spearman(scores["fp32"], scores["bf16"]).min() >= SCORECAM_BF16_BUDGET["spearman"]
    chosen = scores["bf16"].argmax(dim=1)
    rank_in_fp32 = (scores["fp32"] > scores["fp32"].gather(1, chosen[:, None])).sum(dim=1)
    assert rank_in_fp32.max() < SCORECAM_BF16_BUDGET["top_share"] * scores["fp32"].shape[1]
    assert difference.mean() <= SCORECAM_BF16_BUDGET["map_mean"]
    assert bf16.describe()["amp"] == "bf16"


@pytest.mark.parametrize("pool", ["gap", "ca"])
def test_gradient_cams_from_a_bf16_classification_forward(images, pool):
    """recognition --amp bf16: the classification forward's bf16 feature maps feed the gradient CAMs' float32
    head; the maps stay near those of a float32 forward."""
    model = _narrow("resnet18", pool)
    targets = torch.tensor([1, 7, 3])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        feature_maps = model.forward_feature_maps(images)
    for name in ("gradcam", "gradcam++"):
        method = create_saliency(name, model)
        maps = method.explain_batch(images, targets, BatchContext(feature_maps=feature_maps))
        assert maps.dtype == torch.float32 and (maps - method(images, targets)).abs().max() < 0.1, name

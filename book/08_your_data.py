# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 8. Your own data, and reproducing the papers
#
# Chapters 3 and 5 ran NSP² {cite:p}`lu2024nsp2` and DMNSP {cite:p}`kang2025dmnsp` on benchmarks that
# ship with `nscl`. This chapter is about the two things a researcher does next:
#
# 1. **run both methods on their own images**: a folder of class folders, cut into any sequence of
#    tasks, with every way such a folder can be wrong named before anything trains;
# 2. **reproduce a row of a paper's table**: the command, the data it expects, what it should cost on
#    a GPU, and which number of the report to put beside the paper's.
#
# The worked example uses a small image folder that this page writes itself, laid out as a user's
# folder would be, with the mess real folders have (two image sizes, grey, RGBA and CMYK files), and runs
# on the tiny preset on a CPU. Point `image_folder` at your own folder to run on it instead.

# %% tags=["parameters"]
image_folder = None  # your folder (train/ and test/ of class folders, or class folders); None: the example
tasks = 3  # equal tasks; or set tasks = None and give first_task and increment
first_task = None
increment = None
class_order = "seeded"  # "seeded", "sorted", or a file listing the classes in order
class_names = None  # a file of the names the text prompts use; None: the folder names
preset = "tiny"  # "tiny" (CPU) or "paper" (the papers' backbones and recipes, GPU)
nsp2_methods = ["Seq", "NSP2", "frozen", "prototype"]  # see ExperimentConfig.only
dmnsp_methods = ["zero-shot", "prototype", "Seq", "DMNSP"]
epochs = None  # None: each recipe's
seed = 0
device = "cpu"
run_root = None  # None: build/outputs/runs/own-<preset>-<method>-<benchmark>; runs resume from here

# %%
# a mistyped parameter (papermill -p NAME VALUE) stops here instead of being silently ignored
from nscl.experiment.config import check_parameters

parameters = check_parameters(
    globals(),
    {
        "image_folder",
        "tasks",
        "first_task",
        "increment",
        "class_order",
        "class_names",
        "preset",
        "nsp2_methods",
        "dmnsp_methods",
        "epochs",
        "seed",
        "device",
        "run_root",
    },
    types={"nsp2_methods": list, "dmnsp_methods": list, "seed": int},
    at_least={"seed": 0},
)

# %%
import os
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image

from nscl.data.benchmarks import load_benchmark, own_data_summary
from nscl.data.example import folder_tree, write_image_folder
from nscl.data.folders import MixedImageModesWarning, scan_image_folder, to_rgb
from nscl.data.own import OwnData, own_class_order, split_classes
from nscl.experiment.config import ExperimentConfig
from nscl.paths import book_runs, output_dir
from nscl.results.plots import savefig
from nscl.results.tables import summary_table

out = output_dir("08_your_data")
run_root = str(Path(run_root).resolve()) if run_root else None  # before the example changes the folder

# %% [markdown]
# ## 8.1 An image folder
#
# `nscl` reads the two layouts people keep images in, the same way torchvision's `ImageFolder` reads
# one split: a folder per class under `train/` and `test/` (a test folder may be called `val/`), or a
# folder per class with nothing held out, which `nscl` splits per class by a seeded fraction
# (`test_fraction`, default 20%). The class of an image is the name of its folder; the folders are
# taken in sorted order, so label $k$ is the $k$-th folder name whatever order the file system lists
# them in. Here is the folder this page uses:

# %%
if image_folder is None:
    os.chdir(out)  # the example's paths print relative to this page's output folder
    folder = write_image_folder(Path("my_shapes"), n_classes=6, train_per_class=40, test_per_class=10)
else:
    folder = Path(image_folder).expanduser()
print(folder_tree(folder, files_per_folder=2))

# %% [markdown]
# A look at the data before any code touches it: one training image per class, at the size and in the
# colour mode it was saved (the example folder mixes 32 and 48 px files and several modes). Every image
# is converted to 8-bit RGB when it is read (grey is copied to the three channels, alpha is dropped as
# torchvision does, CMYK is mapped to RGB, 16-bit grey is scaled), and each method's transform then resizes
# and crops it to its input size.

# %%
scan = scan_image_folder(folder)
first_of_class = {label: path for label, path in reversed(scan.train)}
fig, axes = plt.subplots(1, len(scan.classes), figsize=(1.6 * len(scan.classes), 2.2))
for ax, (label, path) in zip(np.atleast_1d(axes), sorted(first_of_class.items())):
    with Image.open(path) as image:
        ax.imshow(np.asarray(to_rgb(image)))
        ax.set_title(f"{scan.classes[label]}\n{image.mode}, {image.width} px", fontsize=8)
    ax.axis("off")
fig.suptitle("One training image per class folder (its stored mode and size)")
savefig(fig, out / "classes.png")
plt.show()

# %% [markdown]
# ## 8.2 From a folder to a benchmark
#
# A class-incremental protocol needs three things besides the images: how many classes each task gets,
# in which order the classes arrive, and the words the text prompts of CLIP use for each class. `OwnData`
# holds them. The protocol is either `tasks` equal tasks or a `first_task` of $B$ classes followed by
# tasks of `increment` $K$ classes ("B$B$ Inc$K$", as DMNSP's protocols are named); the $C$ classes split
# only if $C - B$ is a multiple of $K$:
#
# $$T = 1 + \frac{C - B}{K}, \qquad (C - B) \bmod K = 0 .$$
#
# The class order is by default NSP²'s rule, a shuffle of $0, \dots, C-1$ by numpy's PCG64 generator
# seeded with $2024 + \text{seed}$, so every seed also draws its own order; `"sorted"` keeps the folders'
# order, and a file fixes any order. Both steps, written out, then checked against the package:

# %%
own = OwnData(
    str(folder),
    tasks=tasks,
    first_task=first_task,
    increment=increment,
    class_order=class_order,
    class_names=class_names,
)
n_classes = len(scan.classes)
size = n_classes // tasks if tasks is not None else increment
first = size if tasks is not None else (first_task or increment)
assert (n_classes - first) % size == 0, "the classes do not split into these tasks"
assert split_classes(n_classes, own) == (first, size)

order = np.arange(n_classes)
np.random.Generator(np.random.PCG64(2024 + seed)).shuffle(order)
if class_order == "seeded":
    assert own_class_order(own, scan.classes, seed) == order.tolist()
print(f"{n_classes} classes: a first task of {first}, then tasks of {size} ({1 + (n_classes - first) // size} tasks)")
print("class order (seed", seed, "):", [scan.classes[c] for c in own_class_order(own, scan.classes, seed)])

# %% [markdown]
# `ExperimentConfig(own_data=...)` takes the same fields, and so do the command line and a config file,
# which is how a run on your data is usually started:
#
# ```
# python -m nscl run --own-data source=~/my_images tasks=5 --method nsp2 --seeds 0 1 2
# python -m nscl run --config my_images.toml            # [own_data] source = "~/my_images", tasks = 5
# papermill 08_your_data.ipynb out.ipynb -p image_folder ~/my_images -p tasks 5
# ```
#
# Building the config lists the folder and checks the protocol and the order and names files; a dry
# run (`--dry-run`) also decodes every image once, so an unreadable file is named before a GPU is booked:

# %%
configs = {}
for method, only in (("nsp2", nsp2_methods), ("dmnsp", dmnsp_methods)):
    configs[method] = ExperimentConfig(
        method=method, preset=preset, own_data=own, only=only, seeds=[seed], epochs=epochs, device=device
    )
bench = configs["nsp2"].benchmark_spec
with warnings.catch_warnings():
    warnings.simplefilter("ignore", MixedImageModesWarning)  # the summary's last line counts the converted images
    print(own_data_summary(bench))
    data = load_benchmark(bench, seed)
print(f"benchmark id {bench.id}; task sizes {bench.task_sizes}")
print("first task's classes, as the prompts name them:", [data.class_names[p] for p in data.scenario.task_positions(0)])

# %% [markdown]
# ## 8.3 Both methods and their controls on it
#
# Each method family runs with its recipe (the tiny one here: the tiny ViT and CLIP of chapter 0,
# which see every image at 32 px) and the controls of chapter 7: sequential fine-tuning (Seq), the
# frozen control (trained on task 1 only), the prototype classifier on the frozen backbone, and
# zero-shot CLIP. On a folder this small and this easy the numbers say little about the methods; the
# point is that every one of them runs on it, checkpointed and resumable, as on the papers' benchmarks.

# %%
frames = []
for method, config in configs.items():
    root = Path(run_root) / method if run_root else book_runs(f"own-{preset}-{method}-{bench.id}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MixedImageModesWarning)  # reported once above
        frame, _ = config.run(root)
    frames.append(frame)
runs = pd.concat(frames, ignore_index=True)
summary_table(runs)

# %%
# one colour per experiment: NSP²'s methods run on the tiny ViT (or CLIP), DMNSP's on the tiny CLIP
fig, ax = plt.subplots(figsize=(7, 3))
for method, frame, colour in zip(configs, frames, ("tab:blue", "tab:orange")):
    values = frame.groupby("method", sort=False).last_accuracy.mean() * 100
    names = [f"{label} ({method})" for label in values.index]
    ax.barh(names, values.to_numpy(), color=colour, label=f"{method} experiment")
ax.legend(loc="lower right", fontsize=8)
ax.set_xlabel("last accuracy (%), all classes after the last task")
ax.set_xlim(0, 100)
ax.invert_yaxis()
ax.set_title(f"{bench.id}, seed {seed}: every method on the folder")
savefig(fig, out / "methods.png")
plt.show()

# %% [markdown]
# ## 8.4 When the folder is wrong
#
# A folder that cannot make a benchmark stops with an error of its own class (all are
# `nscl.data.folders.ImageFolderError`, a `ValueError`), whose message names the path and says what to
# do. The cases: a missing root or a `train/` without `test/` (`FolderNotFoundError`), no class folders or
# an empty one (`EmptyFolderError`), a single class (`SingleClassError`), different classes in `train/`
# and `test/` (`ClassMismatchError`), a class too small to split (`TooFewImagesError`), classes that do not
# split into the asked tasks (`TaskSplitError`), bad names or order files (`ClassNamesError`,
# `ClassOrderError`), and files that do not decode (`UnreadableImageError`). Three of them, made on copies:

# %%
import shutil

from nscl.data.folders import ImageFolderError


def error_of(make_config) -> str:
    try:
        make_config()
    except ImageFolderError as err:
        return f"{type(err).__name__}: {str(err)[:160]}..."
    return "no error"


broken = out / "broken" if image_folder is not None else Path("broken")
shutil.rmtree(broken, ignore_errors=True)
write_image_folder(broken, n_classes=3, train_per_class=4, test_per_class=2, mixed_modes=False)
victim = sorted((broken / "train").rglob("*.png"))[0]
victim.write_bytes(victim.read_bytes()[:120])  # an interrupted copy
cases = {
    "4 tasks of 6 classes": lambda: ExperimentConfig(own_data={"source": str(folder), "tasks": 4}),
    "a truncated file": lambda: own_data_summary(
        ExperimentConfig(own_data={"source": str(broken), "tasks": 3}).benchmark_spec
    ),
    "a test/ folder missing": lambda: (shutil.rmtree(broken / "test"), scan_image_folder(broken)),
}
for case, make in cases.items():
    print(f"{case}:\n    {error_of(make)}")

# %% [markdown]
# ## 8.5 The papers' protocols
#
# Beyond the protocols of chapters 3 and 5, `nscl` carries the papers' remaining ones, each with its
# recipe and source:
#
# * NSP²'s long sequences {cite:p}`lu2024nsp2` (Table 4): 50 tasks on CIFAR-100, ImageNet-R and DomainNet,
#   100 tasks on ImageNet-R and DomainNet. The paper reports two NSP² rows: † without the plasticity
#   enhancement ($\eta_1 = \eta_2 = 1$) and ‡ with it. No script or value is published for these runs, so
#   the recipe takes each data set's 10-task temperature and $\eta$ (CIFAR-100: the 20-task ones).
# * DMNSP on ImageNet-R as its authors' library runs it (RL-VIG/LibContinual, `config/dmnsp_imgnr.yaml`):
#   20 tasks of 10 classes, evaluated task-aware; no number is published for it.
#
# Every protocol has a tiny look-alike (chapter 7): the long sequences map to the longest tiny split.

# %%
from nscl.data.benchmarks import BENCHMARKS, reference_results
from nscl.data.protocols import DMNSP_PROTOCOLS, LOOKALIKES, NSP2_LONG_PROTOCOLS

new = list(NSP2_LONG_PROTOCOLS) + [p for p in DMNSP_PROTOCOLS if p.startswith("imagenet")]
pd.DataFrame(
    {
        "tasks": [BENCHMARKS[p].n_tasks for p in new],
        "classes per task": [BENCHMARKS[p].increment for p in new],
        "tiny look-alike": [LOOKALIKES[p].shape for p in new],
        "why": [LOOKALIKES[p].reason for p in new],
    },
    index=pd.Index(new, name="protocol"),
)

# %%
long = pd.concat([reference_results(p) for p in NSP2_LONG_PROTOCOLS])
long.pivot_table(index="method", columns=["benchmark", "metric"], values="value", sort=False).round(2).T

# %% [markdown]
# ## 8.6 Reproducing each row
#
# One row per reported number of either paper: the command that runs it (command line and papermill,
# on the chapter of its method), the data it expects and how to prepare it, what one seed should cost on
# one H100, and which column of `python -m nscl report` to put beside the paper's number. The GPU figures
# are **estimates, not measurements**: time from the images a run pushes through the network at an assumed
# 2,000 images/s in bf16 (a third of that in fp32, DMNSP's precision), memory from the activations a
# ViT-B/16 keeps for the backward pass (Korthikanti et al., 2022). On a machine that is online, `--download`
# fetches CIFAR-100; `python -m nscl export cifar100 OUT` writes it as image folders for code bases that read those.

# %%
from nscl.results.reproduce import reproduction_rows

guide = reproduction_rows()
for (paper, benchmark), rows in guide.groupby(["paper", "benchmark"], sort=False):
    print(f"== {paper} · {benchmark} · data: {rows.data.iloc[0]}")
    for row in rows.itertuples():
        print(f"  {row.method} [{row.source}] reported: {row.reported}")
        if row.command.startswith("python"):
            print(f"    $ {row.command}\n    $ {row.papermill}\n    GPU: {row.gpu}; compare: {row.compare}")
        else:
            print(f"    {row.command}")

# %% [markdown]
# How close should a rerun come? Two spreads bound it. Across seeds, the papers print theirs where they
# have it (NSP²'s Table 2: ± over 3 seeds, shown in the rows above). Across machines, chapter 7 measured
# how far a tiny run moves when only the CPU's arithmetic changes; on a GPU the same effect comes from
# other kernels. Both, per method family, for last accuracy:

# %%
from nscl.results.reproducibility import MACHINE_SPREAD_CSV, machine_spread, stated_tolerance

spread = machine_spread(pd.read_csv(MACHINE_SPREAD_CSV), ["last_accuracy"])
by_family = (
    spread.groupby(level="family", sort=False)["seed std"]
    .median()
    .mul(100)
    .to_frame("seed std, median over methods (points)")
)
by_family["stated tolerance across machines (points)"] = [
    stated_tolerance("last_accuracy", family) * 100 for family in by_family.index
]
by_family.round(1)

# %% [markdown]
# ## Summary
#
# * A folder of class folders (either layout) is a benchmark: `OwnData` gives its protocol, class order and
#   names, and the same fields come from a chapter's parameters, a config file and the command line.
# * Every way a folder can be wrong has its own error, raised before anything trains.
# * NSP²'s long sequences and DMNSP's ImageNet-R protocol run like the others; each reported number has a
#   command, a data recipe, a cost estimate and a report column beside it.
#
# ## Exercises
#
# 1. Split the example folder as a first task of 2 classes followed by tasks of 4 (`tasks = None`,
#    `first_task = 2`, `increment = 4`). Which methods' last accuracy moves, and why would a large first
#    task help the frozen control?
# 2. Write a class-order file that puts the two classes of one colour in different tasks, and one that puts
#    them in the same task. Which order makes Seq forget more?
# 3. Export the digits set (`python -m nscl export digits OUT`) and run both methods on it with 5 tasks.
#
# ## References
#
# * Lu, Y. et al. *Visual Prompt Tuning in Null Space for Continual Learning.* NeurIPS 2024.
# * Kang, B. et al. *Dynamic Multi-Layer Null Space Projection for Vision-Language Continual Learning.* ICCV 2025.
# * Korthikanti, V. et al. *Reducing Activation Recomputation in Large Transformer Models.* 2022.

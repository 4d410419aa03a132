"""Data sets as batches on the device: bundled photos, generated images, labeled sets and image folders.

Every source keeps its pixels as one tensor on its device and makes each batch there (crops, resizing,
augmentation, drawing), so a GPU never waits on a data loader. Training, the app and the explanation benchmark
all take their data from here. One module per source:

    batches      ``ImageBatches`` (the interface every source implements), ``DataError``, the splits,
                 the device-side crops and flips, and the finite labeled stack behind digits, CIFAR and folders
    photos       ``photos``
    procedural   ``procedural``
    textured     ``textured``
    shapes       ``shapes``, ``SHAPES_CLASSES``, ``shapes_item``
    digits       ``digits``
    cifar        ``cifar10``, ``cifar100``, ``data_root``
    folders      ``folder:PATH``, ``IMAGE_EXTENSIONS``
    crops        ``crops:PATH``, ``CROPS_HELD_OUT``, ``CROPS_BUDGET_MB``
    upload       ``upload:NAME``: ``import_zip`` (a zip of class folders), ``read_upload``, ``list_uploads``,
                 ``delete_upload``, ``UploadedSet``
    mixtures     ``A:W+B:W``
    spec         the spec parser: ``build_data``, ``fixed_set``, ``check_spec``, ``describe_specs``

Data spec (the training ``--data`` option), one source or a weighted mixture:

    photos          unlabeled random crops of the bundled sample photos (``vitviz.samples``); photo-level
                    split: train crops come from ``TRAIN_PHOTOS``, val and test crops from ``HELD_OUT_PHOTOS``
    procedural      endless generated unlabeled images: layered random discs, ellipses and rectangles
                    ("dead leaves", sizes from a power law) over colour gradients, some filled with stripes or
                    gradients, some blurred, some made of soft overlapping blobs
    textured        endless unlabeled dead leaves as ``procedural``'s, half of the leaves and backgrounds cut
                    out of random crops of the sample photos (train photos for train, held-out photos for val
                    and test): photo statistics within a leaf, a random layout across it
    shapes          generated, labeled: one circle, square, triangle or star (``SHAPES_CLASSES``) at a random
                    position, size (35-60% of the side), rotation and contrasting colour over a muted photo crop
                    (train photos for train, held-out photos for val and test); item i of a split is fixed by
                    (split, i, seed) and has an object mask (``shapes_item``, ``fixed_set``)
    digits          scikit-learn's 8x8 handwritten digits (10 classes, bright ink on black), upscaled
    cifar10         torchvision's CIFAR-10 / CIFAR-100 under ``data_root()`` ($VITVIZ_DATA, else
    cifar100        ~/.cache/vitviz/data); never downloaded here: a missing set fails at once with the command
                    that gets it; val is a fixed 5,000 of the 50,000 training images, test the official test set
    crops:PATH      unlabeled random crops, as for ``photos``, of every image under a folder of your own (any
                    layout); photo-level split, about one image in ten held out (see ``crops``)
    folder:PATH     a folder with one sub-folder of images per class (a bare path to an existing folder works
                    too, but a bundled source's name is that source: a folder called photos is ./photos); its train/ and val/ (and test/) sub-folders are the split when present, else a fixed
                    80/10/10 split per class; unreadable images are skipped and counted (``.skipped``, ``.notes``)
    upload:NAME     a zip of class folders imported by ``import_zip`` into ``vitviz.registry.uploads_dir()``; a
                    fixed, stratified 80/20 train/val split by the images' names (val is also the test split)
    A:W+B:W         a mixture: each batch item comes from part A or B with probability proportional to its
                    weight W (default 1), e.g. ``photos:1+procedural:1``; labeled only when every part has the
                    same classes (labels -1 otherwise); a folder path inside a mixture cannot contain "+"

``procedural`` has no split of its own: every split draws from the same endless distribution, and
``fixed_set`` gives val and test different images.

Augmentation (train split only, on the device): random resized crops and flips for ``photos``; crops of
80-100% of the side (small shifts and zooms) and flips for labeled sets (no flips for ``digits``, where a
mirrored digit is another shape); none for ``procedural``, ``textured`` and ``shapes``, whose every training
item is new.
Val and test get none: ``photos`` then gives square crops without flips.

Determinism: a batch is a function of the ``torch.Generator`` passed to ``sample`` (its random numbers are
drawn on the generator's device); ``shapes`` items and ``fixed_set`` are functions of ``seed``. Splits never
depend on ``seed``, so no seed can move a test item into training.

Errors: every bad spec, path, argument or missing data set raises ``DataError`` (a ``ValueError``) with one
message naming the bad value and what to do. ``check_spec`` raises the ones found without reading an image.
"""

from .batches import SPLITS, DataError, ImageBatches, Split
from .cifar import data_root
from .crops import CROPS_BUDGET_MB, CROPS_HELD_OUT
from .folders import IMAGE_EXTENSIONS
from .shapes import SHAPES_CLASSES, shapes_item
from .spec import SOURCES, build_data, check_spec, describe_specs, fixed_set
from .upload import UploadedSet, delete_upload, import_zip, list_uploads, read_upload

__all__ = [
    "CROPS_BUDGET_MB",
    "CROPS_HELD_OUT",
    "DataError",
    "IMAGE_EXTENSIONS",
    "ImageBatches",
    "SHAPES_CLASSES",
    "SOURCES",
    "SPLITS",
    "Split",
    "UploadedSet",
    "build_data",
    "check_spec",
    "data_root",
    "delete_upload",
    "describe_specs",
    "fixed_set",
    "import_zip",
    "list_uploads",
    "read_upload",
    "shapes_item",
]

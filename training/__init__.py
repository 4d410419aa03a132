"""vitviz training: jigsaw pretraining and classification fine-tuning of timm ViTs, and the starter models.

One GPU or a CPU:

    python -m training pretrain --data photos:1+procedural:1 --image-size 32 --minutes 10 --name my-jigsaw
    python -m training finetune --data shapes --image-size 64 --init my-jigsaw --minutes 10 --name my-shapes
    python -m training evaluate my-jigsaw --data photos --split val
    python -m training quickstart --minutes 20

Several GPUs on one machine (DDP over NCCL; on CPUs the same line runs over gloo):

    torchrun --standalone --nproc-per-node=8 -m training pretrain --model vit_small --image-size 224 --patch-size 16 --data cifar100 --minutes 60

Several machines (run on each, with its --node-rank; RUN_DIR must be shared for --resume):

    torchrun --nnodes=2 --node-rank=0 --nproc-per-node=8 --rdzv-backend=c10d --rdzv-endpoint=HOST:29500 \\
        -m training pretrain --model vit_base --image-size 224 --patch-size 16 --data folder:/data/images --minutes 120

``--batch-size`` is per process. Only rank 0 evaluates and writes files. ``--help`` on each command
explains every option.
"""

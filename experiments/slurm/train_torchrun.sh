#!/usr/bin/env bash
# Multi-node training with torchrun (any cluster, or several machines by hand): run this once
# on every node with the same MASTER_ADDR, NNODES and RUN_NAME, and NODE_RANK 0..NNODES-1.
#
#   MASTER_ADDR=node0 NNODES=2 NODE_RANK=0 RUN_NAME=exp1 experiments/slurm/train_torchrun.sh \
#       configs/teacher/dense_features_flow.yaml
set -euo pipefail
MODEL_CONFIG=${1:?usage: train_torchrun.sh MODEL_CONFIG.yaml [DATA_CONFIG.yaml]}
DATA_CONFIG=${2:-configs/data/synthetic_features.yaml}
GPUS=${GPUS:-$(nvidia-smi -L | wc -l)}
: "${MASTER_ADDR:?}" "${NNODES:?}" "${NODE_RANK:?}" "${RUN_NAME:?all nodes need one run name}"
.venv/bin/torchrun --nnodes="${NNODES}" --node_rank="${NODE_RANK}" --nproc_per_node="${GPUS}" \
    --master_addr="${MASTER_ADDR}" --master_port="${MASTER_PORT:-29500}" \
    "$(dirname "$0")/../../.venv/bin/crossdistill" fit \
    --config "${DATA_CONFIG}" --config "${MODEL_CONFIG}" \
    --trainer.accelerator=gpu --trainer.devices="${GPUS}" --trainer.num_nodes="${NNODES}" \
    --trainer.strategy=ddp --trainer.precision=bf16-mixed --run_name="${RUN_NAME}"

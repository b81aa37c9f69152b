# argen on NVIDIA's NGC PyTorch image, which ships CUDA, NCCL and Apex (FusedAdam, FusedLayerNorm).
#   docker build -t argen .
#   docker run --gpus all --ipc=host -v $PWD/runs:/workspace/argen/runs argen fit -c train/demo.yaml
# Multi-node: run the same image on every node under SLURM (train/slurm.sbatch) or torchrun.
FROM nvcr.io/nvidia/pytorch:25.10-py3

WORKDIR /workspace/argen
COPY setup.cfg pyproject.toml README.md ./
COPY argen ./argen
COPY tokenizer ./tokenizer
COPY train ./train
COPY eval ./eval
COPY benchmarks ./benchmarks
# Pin the base image's own torch build (a CUDA pre-release tag) so pip never replaces it.
RUN python -c "import torch; print('torch==' + torch.__version__)" > /tmp/torch-pin.txt \
 && PIP_CONSTRAINT=/tmp/torch-pin.txt python -m pip install --no-cache-dir -e ".[icons]" \
 && python -c "import apex.optimizers, apex.normalization; print('apex ok')"

ENV WANDB_MODE=offline PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "argen.train"]
CMD ["--help"]

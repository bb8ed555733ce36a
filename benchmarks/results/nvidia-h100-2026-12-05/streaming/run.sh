set -e
export REPO=$PWD CARRY=$PWD/.gpubench/s1 PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/whl $CARRY/whl/*.whl
source benchmarks/gpu-site.sh; gpu_site_install
export PYTHONPATH=/tmp/site:/tmp/whl
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; nproc; python3 -c "import torch, transformers; print(torch.__version__, transformers.__version__)"
S="--engine torch --model $REPO/models/tiny-hindi --repository /tmp/repo --decoder greedy --acoustic-instances 2 --max-streams 2048 --stream-instances ${SI:-8} --max-batch-size 64"
cd /tmp && python3 -m vaani.cli build $S 2>&1 | tail -3
SITES=$(python3 -c "import site;print(':'.join(site.getsitepackages()))")
VAANI_STUB_PATH="/tmp/numpy1:/tmp/site:/tmp/whl:$SITES" VAANI_STUB_NUMPY1=/tmp/numpy1 VAANI_STUB_NUMPY2_FOR=wav2vec2 python3 -m vaani.cli serve --skip-build $S --gateway-port 0 > $OUT/serve.log 2>&1 &
python3 -c "
import time, urllib.request
for _ in range(300):
    try: urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2); print('ready'); break
    except Exception: time.sleep(1)
else: print('never ready')"
cd /tmp && VAANI_COMMIT=$C timeout ${T:-400} python3 -m vaani.benchmarks.streaming --url localhost:8001 --concurrency ${N:-1,16,64,256} --chunk-lengths "" --repeats 1 --recordings $CARRY/recordings.npz --client-processes ${P:-8} --output $OUT/stream 2>&1 | grep -v "^{" | tail -20 || true
tail -5 $OUT/serve.log

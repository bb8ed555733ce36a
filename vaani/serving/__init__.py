"""The serving core: exactly what runs inside Triton's python backend.

Contract (`contract`), model facts (`acoustic`), step context (`step`), audio checks and
normalization (`preprocessing`), ragged batching (`batching`), CTC decoding (`ctc`), the
python-backend engines (`engines`) and the steps themselves (`steps`). It imports nothing
from build, client, loadtest, recipe or benchmarks, and numpy is its only heavy import at
module level (an engine's runtime loads only when that engine is chosen).
"""

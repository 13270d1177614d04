"""Features: ONE definition used by training (batch) and by the online scorer (incremental).

API summary (stable; the services read this):

  FEATURE_NAMES     model-input order: ("side", "spread_bps", ..., "time_since_trade_ms"), float32
  MARKET_FEATURES   per-event market features (no side), stored in parquet
  SCHEMA            FeatureSchema: .names .dtypes .params .hash .sidecar()
  schema_hash()     the live schema hash; a model's model.json ``schema_hash`` must equal it

Online (signal engine / scorer), O(1) amortised per event:
  state = OnlineFeatures()
  state.on_event(ev)           # DepthUpdate | Trade | BookTicker from tidegate.market, arrival order
  state.ready                  # a valid two-sided touch exists
  x = state.vector(side=+1)    # np.float32[len(FEATURE_NAMES)], +1 buy at the bid, -1 sell at the ask
  state.market_vector()        # np.float32[len(MARKET_FEATURES)]
  state.book                   # the BookState (touch, depth, queue sizes)

Batch (training, parquet):
  cols = timeline_columns(frame)             # dict of per-event columns incl. every MARKET_FEATURES name
  X = model_matrix(cols_or_array, side)      # (n, len(FEATURE_NAMES)) float32 for candidates on ``side``

Both paths give bit-identical vectors for the same event stream (tests/test_features.py).
Directional features are multiplied by the side, so positive = in the candidate's favour.
"""

from tidegate.features.batch import timeline_columns
from tidegate.features.formulas import model_matrix
from tidegate.features.online import OnlineFeatures
from tidegate.features.schema import FEATURE_NAMES, MARKET_FEATURES, SCHEMA, FeatureSchema, schema_hash

__all__ = ["FEATURE_NAMES", "MARKET_FEATURES", "SCHEMA", "FeatureSchema", "OnlineFeatures", "model_matrix",
           "schema_hash", "timeline_columns"]

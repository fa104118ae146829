"""One APIRouter per entity; each module exposes `router`."""

"""metav1.Condition helpers now live in `mpcloud_operator.api.conditions`."""
# temporary re-export: removed when the controller layer lands
from mpcloud_operator.api.conditions import (  # noqa: F401
    MAX_MESSAGE, Condition, ConditionStatus, format_time, get_condition, set_condition)

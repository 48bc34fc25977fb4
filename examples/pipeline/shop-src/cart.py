"""The shop backend's cart arithmetic: the code examples/pipeline/git-ci.yaml tests on every push."""


def total(items: list[tuple[float, int]]) -> float:
    """Sum of price × quantity, rounded to cents."""
    return round(sum(price * qty for price, qty in items), 2)


def discounted(amount: float, percent: int) -> float:
    """`amount` less `percent` % (0..100), rounded to cents."""
    if not 0 <= percent <= 100:
        raise ValueError(f"discount {percent}% is not in 0..100")
    return round(amount * (100 - percent) / 100, 2)

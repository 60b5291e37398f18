import redis


def test_the_session_redis_supports_blmove(r: redis.Redis) -> None:
    r.lpush("a", "x")
    assert r.blmove("a", "b", 1, "RIGHT", "LEFT") == b"x"

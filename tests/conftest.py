pytest_plugins = [
    "tests.fixtures.registry",
    "tests.fixtures.kube",
    "tests.fixtures.github",
]

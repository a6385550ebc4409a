from unittest.mock import MagicMock

import pytest

from notifier.service import Renderer


@pytest.fixture
def renderer():
    fake = MagicMock(spec=Renderer)
    fake.render.side_effect = lambda template, **values: template.format(**values)
    yield fake
    fake.reset_mock()

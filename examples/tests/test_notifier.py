"""Notifier tests in the styles real suites mix: mocks on self, patches, nested classes."""
from unittest.mock import AsyncMock, MagicMock, patch

import pytest

from notifier.service import EmailClient, Notifier, Renderer


class TestNotifier:
    """Mocks live on ``self``: pytest keeps this instance until the session ends."""

    def setup_method(self):
        self.client = MagicMock(spec=EmailClient)
        self.client.send = AsyncMock(return_value=True)
        self.notifier = Notifier(self.client, Renderer())

    async def test_notify_renders_and_sends(self):
        assert await self.notifier.notify("a@example.com", "Hi {name}", name="Ada")
        self.client.send.assert_awaited_once_with("a@example.com", "Hi Ada")

    async def test_send_is_patched(self):
        with patch.object(EmailClient, "send", return_value=False) as send:
            assert not await Notifier(EmailClient(), Renderer()).notify("b@example.com", "x")
            send.assert_awaited_once()


class TestRenderer:
    def test_render(self):
        assert Renderer().render("{a}-{b}", a="1", b="2") == "1-2"

    class TestReports:
        def test_send_report_is_sync(self):
            with patch.object(Renderer, "render", return_value="ok") as render:
                assert Notifier(MagicMock(), Renderer()).send_report("c@example.com") == "ok"
                render.assert_called_once()


@pytest.mark.performance
def test_render_many_quickly():
    renderer = Renderer()
    for i in range(10_000):
        renderer.render("{i}", i=str(i))


async def test_notify_with_fixture(renderer):
    client = MagicMock(spec=EmailClient)
    client.send = AsyncMock(return_value=True)
    assert await Notifier(client, renderer).notify("d@example.com", "Hello")


def test_connect_is_patched(mocker):
    connect = mocker.patch("notifier.service.EmailClient.connect")
    EmailClient().connect()
    connect.assert_called_once_with()

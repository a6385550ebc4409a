import unittest
from unittest import mock

from notifier.service import Notifier, Renderer


class NotifierCase(unittest.TestCase):
    def setUp(self):
        self.client = mock.MagicMock()
        self.notifier = Notifier(self.client, Renderer())

    def test_send_report(self):
        self.assertEqual(self.notifier.send_report("e@example.com"), "Report for e@example.com")


class NotifierWithTearDown(unittest.TestCase):
    def setUp(self):
        self.patcher = mock.patch.object(Renderer, "render", return_value="patched")
        self.render = self.patcher.start()

    def tearDown(self):
        self.patcher.stop()

    def test_render_patched(self):
        self.assertEqual(Renderer().render("x"), "patched")

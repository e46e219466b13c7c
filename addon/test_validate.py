"""Unit tests of addon/validate.py: the real manifest passes, broken copies fail for the reason.

    python3 -m unittest discover -s addon -p 'test_*.py'
"""

import shutil
import sys
import tempfile
import unittest
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import validate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FILES = ("config.yaml", "repository.yaml", "CHANGELOG.md", "README.md", "DOCS.md", "icon.png",
         "logo.png", "Dockerfile", "apparmor.txt")


class ValidateTest(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="homeiq-validate-"))
        for name in FILES:
            shutil.copy(ROOT / name, self.tmp / name)
        (self.tmp / "translations").mkdir()
        shutil.copy(ROOT / "translations" / "en.yaml", self.tmp / "translations" / "en.yaml")
        self.config = yaml.safe_load((self.tmp / "config.yaml").read_text())
        self.trans = yaml.safe_load((self.tmp / "translations" / "en.yaml").read_text())

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def run_validate(self):
        (self.tmp / "config.yaml").write_text(yaml.safe_dump(self.config, sort_keys=False))
        (self.tmp / "translations" / "en.yaml").write_text(
            yaml.safe_dump(self.trans, sort_keys=False))
        return validate.validate(self.tmp)

    def assert_fails_with(self, fragment):
        errors = self.run_validate()
        self.assertTrue(errors, "expected the validator to fail")
        self.assertTrue(any(fragment in e for e in errors), f"{fragment!r} not in {errors}")

    def test_real_files_pass(self):
        self.assertEqual(validate.validate(ROOT), [])

    def test_copied_files_pass(self):
        self.assertEqual(self.run_validate(), [])

    def test_unknown_top_level_key(self):
        self.config["snapshot_exclude"] = ["*.tmp"]
        self.assert_fails_with("unknown key 'snapshot_exclude'")

    def test_image_key(self):
        self.config["image"] = "ghcr.io/homeiq/{arch}-homeiq"
        self.assert_fails_with("`image` must be absent")

    def test_build_yaml(self):
        (self.tmp / "build.yaml").write_text("build_from: {}\n")
        self.assert_fails_with("build.yaml: retired")

    def test_unknown_schema_type(self):
        self.config["schema"]["influxdb"]["batch_size"] = "integer(1,100000)"
        self.assert_fails_with("unknown type 'integer(1,100000)'")

    def test_unknown_type_in_list(self):
        self.config["schema"]["include"]["domains"] = ["string"]
        self.assert_fails_with("unknown type 'string'")

    def test_option_without_schema(self):
        self.config["options"]["influxdb"]["bucket"] = "homeiq"
        self.trans["configuration"]["influxdb"]["fields"]["bucket"] = {
            "name": "Bucket", "description": "x"}
        self.assert_fails_with("option influxdb.bucket: no schema entry")

    def test_required_schema_without_default(self):
        del self.config["options"]["influxdb"]["database"]
        self.assert_fails_with("influxdb.database: required in schema but no default")

    def test_default_of_wrong_type(self):
        self.config["options"]["influxdb"]["max_in_flight"] = 99
        self.assert_fails_with("above maximum 16")

    def test_missing_translation(self):
        del self.trans["configuration"]["spool"]["fields"]["max_age_hours"]
        self.assert_fails_with("translation spool.max_age_hours: missing")

    def test_missing_translation_top_level(self):
        del self.trans["configuration"]["storage"]
        self.assert_fails_with("translation storage: missing")

    def test_translation_without_description(self):
        del self.trans["configuration"]["log_level"]["description"]
        self.assert_fails_with("translation log_level: no description")

    def test_version_differs_from_changelog(self):
        self.config["version"] = "0.2.0"
        self.assert_fails_with("differs from CHANGELOG")

    def test_invalid_arch(self):
        self.config["arch"] = ["aarch64", "armv7"]
        self.assert_fails_with("arch 'armv7'")

    def test_supervisor_setting_as_option(self):
        self.config["options"]["http"]["port"] = 8099
        self.config["schema"]["http"]["port"] = "port"
        self.trans["configuration"]["http"]["fields"]["port"] = {"name": "P", "description": "x"}
        self.assert_fails_with("http.port: provided by the Supervisor")

    def test_readme_setting_without_option(self):
        del self.config["options"]["heartbeat"]
        del self.config["schema"]["heartbeat"]
        del self.trans["configuration"]["heartbeat"]
        self.assert_fails_with("README setting heartbeat.interval_minutes: no add-on option")

    def test_bad_watchdog(self):
        self.config["watchdog"] = "http://localhost:8099/health"
        self.assert_fails_with("watchdog")

    def test_newest_release_skips_unreleased(self):
        text = "# Changelog\n\n## [Unreleased]\n\n## [1.2.3] - 2026-01-01\n\n## [1.0.0]\n"
        self.assertEqual(validate.newest_release(text), "1.2.3")


if __name__ == "__main__":
    unittest.main()

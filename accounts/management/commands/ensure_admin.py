import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = (
        "Create the first admin login if there is no superuser yet. Username from COMFYTRACK_ADMIN_USER "
        "(default admin), password from COMFYTRACK_ADMIN_PASSWORD, else generated and printed once."
    )

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write("Admin login exists")
            return
        username = os.environ.get("COMFYTRACK_ADMIN_USER", "admin")
        password = os.environ.get("COMFYTRACK_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username, email="", password=password)
        if "COMFYTRACK_ADMIN_PASSWORD" in os.environ:
            self.stdout.write(f"Created admin login {username!r} (password from COMFYTRACK_ADMIN_PASSWORD)")
        else:
            self.stdout.write(f"Created admin login {username!r} with password {password}  (shown once)")

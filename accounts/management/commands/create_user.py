import os
import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email
from django.db import transaction
from django.forms import ValidationError


class Command(BaseCommand):
    help = "Create a user. Password from COMFYTRACK_PASSWORD, else a generated one printed once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--staff", action="store_true", help="may sign in to the admin (org admins need this)")
        parser.add_argument("--superuser", action="store_true", help="sees and manages every organization")

    def handle(self, *args, username, email, staff, superuser, **options):
        User = get_user_model()
        username = username.strip()
        if not username or len(username) > 150:
            raise CommandError("USERNAME must be 1 to 150 characters.")
        if email:
            try:
                validate_email(email)
            except ValidationError:
                raise CommandError(f"--email {email!r} is not a valid email address.") from None
        if User.objects.filter(username=username).exists():
            raise CommandError(f"user {username!r} already exists.")
        password = os.environ.get("COMFYTRACK_PASSWORD") or ""
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        with transaction.atomic():
            user = User.objects.create_user(username, email=email, password=password)
            user.is_staff = staff or superuser
            user.is_superuser = superuser
            user.save(update_fields=["is_staff", "is_superuser"])
        if generated:
            self.stdout.write(f"Password (shown once): {password}")
        self.stdout.write(f"Created user {user.username}")

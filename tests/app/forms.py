"""Forms whose validation queries the database."""

from django import forms

from tests.app.models import Author, Book, Counter


class PickAuthorForm(forms.Form):
    """A ModelChoiceField: validating it looks the author up."""

    author = forms.ModelChoiceField(queryset=Author.objects.all())


class CounterForm(forms.ModelForm):
    """A ModelForm with a unique field: validating it checks uniqueness."""

    class Meta:
        model = Counter
        fields = ["name", "value"]


class BookForm(forms.ModelForm):
    """A ModelForm with a foreign key."""

    class Meta:
        model = Book
        fields = ["title", "author", "pages"]

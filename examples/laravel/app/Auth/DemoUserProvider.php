<?php

declare(strict_types=1);

namespace App\Auth;

use Illuminate\Auth\GenericUser;
use Illuminate\Contracts\Auth\Authenticatable;
use Illuminate\Contracts\Auth\UserProvider;

/** Two fixed users, so the example needs no database. */
final class DemoUserProvider implements UserProvider
{
    private const USERS = [
        'alice' => ['id' => 'alice', 'name' => 'Alice', 'password' => '', 'remember_token' => null],
        'bob' => ['id' => 'bob', 'name' => 'Bob', 'password' => '', 'remember_token' => null],
    ];

    public function retrieveById($identifier): ?Authenticatable
    {
        $user = self::USERS[$identifier] ?? null;

        return $user === null ? null : new GenericUser($user);
    }

    public function retrieveByToken($identifier, $token): ?Authenticatable
    {
        return null;
    }

    public function updateRememberToken(Authenticatable $user, $token): void
    {
    }

    public function retrieveByCredentials(array $credentials): ?Authenticatable
    {
        return $this->retrieveById($credentials['id'] ?? '');
    }

    public function validateCredentials(Authenticatable $user, array $credentials): bool
    {
        return true;
    }
}
